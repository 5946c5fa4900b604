package fetch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestFetchCacheHit fetches the same checksum again: the image is not requested a second time. A file:
// checksum still reads the sums file, which may have changed since.
func TestFetchCacheHit(t *testing.T) {
	h512 := sha512Hex(testImage)
	for name, checksum := range map[string]string{
		"direct":    "sha512:" + h512,
		"sums file": "file:{url}/images/SHA512SUMS",
	} {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, map[string][]byte{
				imagePath:            testImage,
				"/images/SHA512SUMS": []byte(h512 + "  " + imageName + "\n"),
			})
			f := &Fetcher{CacheDir: t.TempDir()}
			req := Request{URL: srv.URL + imagePath, Checksum: strings.ReplaceAll(checksum, "{url}", srv.URL)}
			first, err := f.Fetch(context.Background(), req)
			if err != nil {
				t.Fatalf("first Fetch: %v", err)
			}
			before := srv.totalHits()
			second, err := f.Fetch(context.Background(), req)
			if err != nil {
				t.Fatalf("second Fetch: %v", err)
			}
			if n := srv.hitCount(imagePath); n != 1 {
				t.Errorf("image requested %d times, want 1", n)
			}
			if name == "direct" && srv.totalHits() != before {
				t.Errorf("second fetch made %d requests, want none", srv.totalHits()-before)
			}
			if second.Downloaded || second.Path != first.Path || second.Checksum != first.Checksum {
				t.Errorf("second = %+v, want the cached %+v", second, first)
			}
		})
	}
}

// TestFetchConcurrent fetches one checksum from several goroutines: one download, one object.
func TestFetchConcurrent(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	f := &Fetcher{CacheDir: t.TempDir()}
	req := Request{URL: srv.URL + imagePath, Checksum: "sha256:" + sha256Hex(testImage)}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = f.Fetch(context.Background(), req)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := srv.hitCount(imagePath); n != 1 {
		t.Errorf("image requested %d times, want 1", n)
	}
}

// TestFetchCacheRepairs changes a cached object behind the cache's back: the next fetch notices (the
// verification record no longer matches), drops it and downloads again.
func TestFetchCacheRepairs(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	f := &Fetcher{CacheDir: t.TempDir()}
	req := Request{URL: srv.URL + imagePath, Checksum: "sha256:" + sha256Hex(testImage)}
	first, err := f.Fetch(context.Background(), req)
	if err != nil {
		t.Fatalf("first Fetch: %v", err)
	}
	if err := os.Chmod(first.Path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(first.Path, []byte("scribbled over"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := f.Cached(context.Background(), first.Checksum); ok || err != nil {
		t.Fatalf("Cached = %v, %v; want a miss", ok, err)
	}
	second, err := f.Fetch(context.Background(), req)
	if err != nil {
		t.Fatalf("second Fetch: %v", err)
	}
	if !second.Downloaded || srv.hitCount(imagePath) != 2 {
		t.Errorf("downloaded %v after %d requests, want a second download", second.Downloaded, srv.hitCount(imagePath))
	}
	assertContent(t, second.Path, testImage)
	if ok, err := f.Verify(context.Background(), second.Checksum); !ok || err != nil {
		t.Errorf("Verify = %v, %v; want a good object", ok, err)
	}
}

// TestFetchDest writes the image to a destination, from the network and then from the cache; the copy is
// private and writable, the cache object stays read-only.
func TestFetchDest(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	base := t.TempDir()
	f := &Fetcher{CacheDir: t.TempDir()}
	sum := "sha256:" + sha256Hex(testImage)
	for i, dest := range []string{"out/first.qcow2", filepath.Join(base, "out", "second.qcow2")} {
		res, err := f.Fetch(context.Background(), Request{URL: srv.URL + imagePath, Checksum: sum, BaseDir: base, Dest: dest})
		if err != nil {
			t.Fatalf("Fetch %d: %v", i, err)
		}
		want := dest
		if !filepath.IsAbs(want) {
			want = filepath.Join(base, dest)
		}
		if res.Path != want || res.Downloaded != (i == 0) {
			t.Errorf("Fetch %d = %+v, want path %s, downloaded %v", i, res, want, i == 0)
		}
		assertContent(t, res.Path, testImage)
		if fi, err := os.Stat(res.Path); err != nil || fi.Mode().Perm()&0o200 == 0 {
			t.Errorf("destination mode %v (%v), want writable", fi.Mode(), err)
		}
	}
	obj, ok, err := f.Cached(context.Background(), Checksum{SHA256, sha256Hex(testImage)})
	if !ok || err != nil {
		t.Fatalf("Cached = %v, %v", ok, err)
	}
	if fi, err := os.Stat(obj); err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("cache object mode %v (%v), want 0444", fi.Mode(), err)
	}
	if n := srv.hitCount(imagePath); n != 1 {
		t.Errorf("image requested %d times, want 1", n)
	}
}

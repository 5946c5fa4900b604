package fetch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestFetchDest downloads to relative and absolute destinations and over a file already there; the copy is
// private and writable.
func TestFetchDest(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	base := t.TempDir()
	stale := filepath.Join(base, "out", "stale.qcow2")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("an older download"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ dest, want string }{
		"relative to the base directory": {dest: "out/first.qcow2", want: filepath.Join(base, "out", "first.qcow2")},
		"absolute, folder created":       {dest: filepath.Join(base, "new", "second.qcow2"), want: filepath.Join(base, "new", "second.qcow2")},
		"replaces a file":                {dest: stale, want: stale},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := (&Fetcher{}).Fetch(context.Background(), Request{
				URL: srv.URL + imagePath, Checksum: "sha256:" + sha256Hex(testImage), BaseDir: base, Dest: tc.dest,
			})
			if err != nil {
				t.Fatal(err)
			}
			want := Result{Path: tc.want, Checksum: Checksum{SHA256, sha256Hex(testImage)}, Size: int64(len(testImage)), Downloaded: true}
			if res != want {
				t.Errorf("got %+v, want %+v", res, want)
			}
			assertContent(t, res.Path, testImage)
			if fi, err := os.Stat(res.Path); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("destination mode %v (%v), want 0644", fi.Mode(), err)
			}
		})
	}
}

// TestFetchConcurrent fetches one URL from several goroutines to destinations of their own, with progress
// callbacks; under -race it checks that the fetches share no go-getter state.
func TestFetchConcurrent(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	dir := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	last := make([]int64, len(errs))
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = (&Fetcher{}).Fetch(context.Background(), Request{
				URL:      srv.URL + imagePath,
				Checksum: "sha256:" + sha256Hex(testImage),
				Dest:     filepath.Join(dir, fmt.Sprintf("copy-%d.qcow2", i)),
				Progress: func(done, _ int64) { last[i] = done },
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i := range errs {
		assertContent(t, filepath.Join(dir, fmt.Sprintf("copy-%d.qcow2", i)), testImage)
		if last[i] != int64(len(testImage)) {
			t.Errorf("fetch %d: last progress %d, want %d", i, last[i], len(testImage))
		}
	}
}

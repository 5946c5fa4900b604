package fetch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// TestFetchSizeBound downloads from servers that announce or send more than the request's bound: each is
// refused with a *TooLargeError that says the bound, and nothing is left at the destination. Progress is
// set in half the runs because go-getter (v2.2.5) forgets its own MaxBytes when a progress listener is set.
func TestFetchSizeBound(t *testing.T) {
	const limit = 100 << 10
	cases := map[string]struct {
		path         string
		maxSize      int64
		wantLimit    int64
		wantAnnounce int64
		wantErr      []string
	}{
		"announced above the bound": {
			path: imagePath, maxSize: limit, wantLimit: limit, wantAnnounce: int64(len(testImage)),
			wantErr: []string{"announces 256 KiB", "limit of 100 KiB"},
		},
		"sent above the bound without announcing a size": {
			path: "/chunked" + imagePath, maxSize: limit, wantLimit: limit, wantAnnounce: -1,
			wantErr: []string{"sent more than", "limit of 100 KiB", "announced no size"},
		},
		"announced above the default bound of 64 GiB": {
			path: fmt.Sprintf("/announce/%d/big.qcow2", DefaultMaxSize+1), wantLimit: DefaultMaxSize, wantAnnounce: DefaultMaxSize + 1,
			wantErr: []string{"limit of 64 GiB"},
		},
	}
	for name, tc := range cases {
		for _, progress := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/progress=%v", name, progress), func(t *testing.T) {
				srv := newServer(t, map[string][]byte{imagePath: testImage})
				destDir := t.TempDir()
				var seen int64
				req := Request{URL: srv.URL + tc.path, Dest: filepath.Join(destDir, "source.qcow2"), MaxSize: tc.maxSize}
				if progress {
					req.Progress = func(done, _ int64) { seen = done }
				}
				_, err := (&Fetcher{}).Fetch(context.Background(), req)
				var tooLarge *TooLargeError
				if !errors.As(err, &tooLarge) {
					t.Fatalf("error %v, want a *TooLargeError", err)
				}
				t.Logf("error: %v", err)
				if tooLarge.Limit != tc.wantLimit || tooLarge.Announced != tc.wantAnnounce {
					t.Errorf("limit %d announced %d, want %d %d", tooLarge.Limit, tooLarge.Announced, tc.wantLimit, tc.wantAnnounce)
				}
				for _, want := range append(tc.wantErr, srv.URL+tc.path) {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				if seen > tc.wantLimit {
					t.Errorf("progress saw %d bytes, more than the bound of %d", seen, tc.wantLimit)
				}
				assertNoFiles(t, destDir)
			})
		}
	}
}

// TestFetchSizeBoundFits downloads an image exactly as large as the bound, and one with no bound at all.
func TestFetchSizeBoundFits(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	for name, maxSize := range map[string]int64{"exactly the bound": int64(len(testImage)), "no bound": -1} {
		for _, path := range []string{imagePath, "/chunked" + imagePath} {
			t.Run(name+path, func(t *testing.T) {
				res, err := (&Fetcher{}).Fetch(context.Background(), Request{
					URL: srv.URL + path, Checksum: "sha256:" + sha256Hex(testImage),
					Dest: filepath.Join(t.TempDir(), "source.qcow2"), MaxSize: maxSize,
				})
				if err != nil {
					t.Fatal(err)
				}
				assertContent(t, res.Path, testImage)
			})
		}
	}
}

// TestFetchFreeSpaceStatfs asks the real file system of the destination: a server that announces an
// exbibyte is refused before a byte is written, naming the folder, the size and what is free.
func TestFetchFreeSpaceStatfs(t *testing.T) {
	srv := newServer(t, nil)
	destDir := t.TempDir()
	_, err := (&Fetcher{}).Fetch(context.Background(), Request{
		URL: srv.URL + fmt.Sprintf("/announce/%d/big.qcow2", int64(1)<<60), Dest: filepath.Join(destDir, "source.qcow2"), MaxSize: -1,
	})
	var space *SpaceError
	if !errors.As(err, &space) {
		t.Fatalf("error %v, want a *SpaceError", err)
	}
	t.Logf("error: %v", err)
	if space.Dir != destDir || space.Need != 1<<60 || space.Free <= 0 || space.Free >= 1<<60 || space.Done != 0 {
		t.Errorf("got %+v, want the folder %s, 1 EiB needed and what its file system has free", space, destDir)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("errors.Is(%v, ENOSPC) is false", err)
	}
	for _, want := range []string{destDir, "1 EiB", "free"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	assertNoFiles(t, destDir)
}

// fakeSpace answers free-space questions from a list, one answer per call, the last one repeated; it records
// the folders asked about.
type fakeSpace struct {
	mu      sync.Mutex
	answers []int64
	dirs    []string
}

func (f *fakeSpace) free(dir string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dirs = append(f.dirs, dir)
	n := f.answers[0]
	if len(f.answers) > 1 {
		f.answers = f.answers[1:]
	}
	return n, nil
}

// TestFetchFreeSpace checks free space before and while downloading (or copying a local file), with the
// file system's answers scripted: a download that does not fit fails with a *SpaceError and leaves nothing.
func TestFetchFreeSpace(t *testing.T) {
	size := int64(len(testImage))
	cases := map[string]struct {
		path     string // on the server; "local" copies a local file
		free     []int64
		wantNeed int64
		wantFree int64
		wantDone bool // whether the error comes after some bytes arrived
		wantErr  []string
	}{
		"announced size does not fit": {
			path: imagePath, free: []int64{size - 1}, wantNeed: size, wantFree: size - 1,
			wantErr: []string{"needs 256 KiB (262160 bytes)", "(262159 bytes) free"},
		},
		"space used by something else while downloading": {
			path: imagePath, free: []int64{size, 1024}, wantFree: 1024, wantDone: true,
			wantErr: []string{"more needed", "1 KiB free"},
		},
		"no size announced and the file system fills up": {
			path: "/chunked" + imagePath, free: []int64{1 << 30, spaceReserve - 1}, wantNeed: spaceReserve, wantFree: spaceReserve - 1, wantDone: true,
			wantErr: []string{"announced no size", "64 MiB"},
		},
		"local copy does not fit": {
			path: "local", free: []int64{size - 1}, wantNeed: size, wantFree: size - 1,
			wantErr: []string{"needs 256 KiB"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, map[string][]byte{imagePath: testImage})
			url := srv.URL + tc.path
			if tc.path == "local" {
				url = filepath.Join(t.TempDir(), imageName)
				if err := os.WriteFile(url, testImage, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			destDir := t.TempDir()
			fs := &fakeSpace{answers: tc.free}
			f := &Fetcher{freeSpace: fs.free, spaceEvery: 32 << 10}
			_, err := f.Fetch(context.Background(), Request{URL: url, Checksum: "sha256:" + sha256Hex(testImage), Dest: filepath.Join(destDir, "source.qcow2")})
			var space *SpaceError
			if !errors.As(err, &space) {
				t.Fatalf("error %v, want a *SpaceError", err)
			}
			t.Logf("error: %v", err)
			if space.Dir != destDir || space.Free != tc.wantFree || (tc.wantNeed != 0 && space.Need != tc.wantNeed) {
				t.Errorf("got %+v, want folder %s, need %d, free %d", space, destDir, tc.wantNeed, tc.wantFree)
			}
			if (space.Done > 0) != tc.wantDone || space.Done > size {
				t.Errorf("failed after %d bytes, want after some: %v", space.Done, tc.wantDone)
			}
			for _, want := range append(tc.wantErr, destDir) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			for _, dir := range fs.dirs {
				if dir != destDir {
					t.Errorf("free space asked of %s, want the destination's folder %s", dir, destDir)
				}
			}
			assertNoFiles(t, destDir)
		})
	}
}

// TestFetchFreeSpaceFits downloads when the file system has just enough room, asking it again as bytes
// arrive.
func TestFetchFreeSpaceFits(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	size := int64(len(testImage))
	// What is free shrinks as the download fills the disk; each answer still covers what is to come.
	fs := &fakeSpace{answers: []int64{size, size - 32<<10, size - 64<<10, size - 96<<10, size - 128<<10, size - 160<<10, size - 192<<10, size - 224<<10}}
	f := &Fetcher{freeSpace: fs.free, spaceEvery: 32 << 10}
	res, err := f.Fetch(context.Background(), Request{URL: srv.URL + imagePath, Dest: filepath.Join(t.TempDir(), "source.qcow2")})
	if err != nil {
		t.Fatal(err)
	}
	assertContent(t, res.Path, testImage)
	if len(fs.dirs) < 2 {
		t.Errorf("free space asked %d times, want before and while downloading", len(fs.dirs))
	}
}

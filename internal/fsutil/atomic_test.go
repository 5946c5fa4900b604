package fsutil

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// tempFiles lists the leftovers of atomic writes in dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.txt")
	for i, content := range []string{"first", "second, longer than the first"} {
		if err := WriteFileAtomic(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != content {
			t.Fatalf("write %d: read %q, %v", i, b, err)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, %v; want 0640", fi.Mode(), err)
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x"), nil, 0o644); err == nil {
		t.Error("write into a missing folder succeeded")
	}
}

// TestCreateAtomicStream streams more than fits a single write, as the export step does with images.
func TestCreateAtomicStream(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "image.qcow2.zst")
	if err := os.WriteFile(path, []byte("old image"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	f, err := CreateAtomic(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Abort(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := io.Copy(f, bytes.NewReader(src)); err != nil {
		t.Fatal(err)
	}
	// Until Commit, readers see the old file.
	if b, err := os.ReadFile(path); err != nil || string(b) != "old image" {
		t.Fatalf("before Commit: %q, %v", b, err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || sha256.Sum256(b) != sha256.Sum256(src) {
		t.Fatalf("after Commit: %d bytes, %v", len(b), err)
	}
	if err := f.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestCreateAtomicAbort(t *testing.T) {
	tests := map[string]func(t *testing.T, f *AtomicFile) error{
		"abort": func(t *testing.T, f *AtomicFile) error { return f.Abort() },
		"commit into a folder that went away": func(t *testing.T, f *AtomicFile) error {
			if err := os.Rename(filepath.Dir(f.Path()), filepath.Dir(f.Path())+".moved"); err != nil {
				t.Fatal(err)
			}
			err := f.Commit()
			if err == nil {
				t.Error("Commit succeeded")
			}
			return nil
		},
		"commit after a failed write": func(t *testing.T, f *AtomicFile) error {
			if err := f.File().Close(); err != nil { // makes the next write fail
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("x")); err == nil {
				t.Fatal("write to a closed file succeeded")
			}
			if err := f.Commit(); err == nil || !strings.Contains(err.Error(), "earlier write failed") {
				t.Errorf("Commit = %v, want the earlier write error", err)
			}
			return nil
		},
	}
	for name, run := range tests {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "dist")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "out")
			f, err := CreateAtomic(path, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write([]byte("partial")); err != nil {
				t.Fatal(err)
			}
			if err := run(t, f); err != nil {
				t.Fatal(err)
			}
			if err := f.Abort(); err != nil {
				t.Errorf("Abort after the end: %v", err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("final path exists: %v", err)
			}
			if left := tempFiles(t, dir); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
}

// TestRemoveStaleTemps: a killed writer's temp file goes, a live writer's stays and still commits.
func TestRemoveStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "image[1].qcow2.zst")
	live, err := CreateAtomic(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.Write([]byte("new")); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(dir, ".image[1].qcow2.zst.tmp-123")
	other := filepath.Join(dir, ".other.tmp-123")
	for _, p := range []string{dead, other} {
		if err := os.WriteFile(p, []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveStaleTemps(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != dead {
		t.Fatalf("removed %v, want only %s", removed, dead)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another file's temp file was removed: %v", err)
	}
	if err := live.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "new" {
		t.Errorf("after commit: %q, %v", b, err)
	}
}

// TestRemoveStaleTempsAfterKill: the temp file of a writer killed by SIGKILL (no deferred Abort runs) is
// removed, while that of a writer alive in another process stays, and that writer still commits.
func TestRemoveStaleTempsAfterKill(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.raw")
	endDead := startWriter(t, path)
	endLive := startWriter(t, path)
	if left := tempFiles(t, dir); len(left) != 2 {
		t.Fatalf("temp files %v, want one per writer", left)
	}
	if removed, err := RemoveStaleTemps(path); err != nil || len(removed) != 0 {
		t.Fatalf("with both writers alive: removed %v, %v; want nothing", removed, err)
	}

	endDead(false)
	removed, err := RemoveStaleTemps(path)
	if err != nil || len(removed) != 1 {
		t.Fatalf("after a kill: removed %v, %v; want the dead writer's temp file", removed, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed writer left %s: %v", path, err)
	}

	endLive(true)
	if b, err := os.ReadFile(path); err != nil || string(b) != "half a file" {
		t.Errorf("the live writer's commit: %q, %v", b, err)
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Errorf("temp files left: %v", left)
	}
}

func TestTempPrefix(t *testing.T) {
	for path, want := range map[string]string{
		"out.txt":             ".out.txt.tmp-",
		"/dist/image.qcow2":   ".image.qcow2.tmp-",
		"dist/SHA256SUMS":     ".SHA256SUMS.tmp-",
		"dist/image[1].raw":   ".image[1].raw.tmp-",
		"dist/with space.raw": ".with space.raw.tmp-",
	} {
		if got := TempPrefix(path); got != want {
			t.Errorf("TempPrefix(%q) = %q, want %q", path, got, want)
		}
	}
}

// Racing writers of WriteFileOnce: one wins, the others get fs.ErrExist and the file holds the winner's
// data, whole; no temp file stays.
func TestWriteFileOnceRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "salt")
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = WriteFileOnce(path, bytes.Repeat([]byte{byte('a' + i)}, 4096), 0o600)
		}()
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("writers %d and %d both won", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, fs.ErrExist):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil || won < 0 || !bytes.Equal(got, bytes.Repeat([]byte{byte('a' + won)}, 4096)) {
		t.Fatalf("winner %d, content %.8q..., %v", won, got, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v %v", fi.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}

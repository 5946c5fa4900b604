package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := SyncDir(dir); err != nil {
		t.Errorf("SyncDir(%s) = %v", dir, err)
	}
	missing := filepath.Join(dir, "missing")
	if err := SyncDir(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SyncDir of a missing folder = %v, want ErrNotExist", err)
	}
}

func TestSyncFile(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	if err := SyncFile(f); err != nil {
		t.Errorf("SyncFile = %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := SyncFile(f); !errors.Is(err, os.ErrClosed) {
		t.Errorf("SyncFile of a closed file = %v, want ErrClosed", err)
	}
}

func TestRemoveIfExists(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := RemoveIfExists(path); err != nil {
			t.Errorf("RemoveIfExists = %v", err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there: %v", path, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveIfExists(filepath.Join(dir, "sub", "x")); err == nil {
		t.Error("RemoveIfExists below a plain file succeeded")
	}
}

package fsutil

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTryFlock: two opens of one file exclude each other like two processes, and the lock goes with
// LOCK_UN or Close.
func TestTryFlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	open := func() *os.File {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	}
	a, b := open(), open()
	try := func(f *os.File, how int, want bool) {
		t.Helper()
		if ok, err := TryFlock(f, how); err != nil || ok != want {
			t.Fatalf("TryFlock(%d) = %v, %v; want %v", how, ok, err, want)
		}
	}
	try(a, unix.LOCK_EX, true)
	try(b, unix.LOCK_EX, false)
	try(b, unix.LOCK_SH, false)
	if err := Flock(a, unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	try(b, unix.LOCK_SH, true)
	try(a, unix.LOCK_SH, true)
	try(a, unix.LOCK_EX, false)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	try(a, unix.LOCK_EX, true)

	closed := open()
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := TryFlock(closed, unix.LOCK_EX); err == nil {
		t.Error("TryFlock on a closed file succeeded")
	}
}

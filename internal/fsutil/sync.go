package fsutil

import (
	"errors"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// SyncFile is f.Sync that tolerates file systems without fsync (some FUSE and network ones, which
// report ENOTSUP or EINVAL): there the data is as durable as it gets anyway.
func SyncFile(f *os.File) error {
	if err := f.Sync(); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// SyncDir fsyncs the folder dir, so that the entries created, renamed or removed in it survive a crash.
// Without it a power loss can undo a rename whose file data was synced.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(SyncFile(d), d.Close())
}

// RemoveIfExists removes path, and is content when it is already gone.
func RemoveIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

package state

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// maxRelink bounds how often tryLock follows a lock file that gc unlinked under it; in practice once.
const maxRelink = 100

// tryLockFile opens (creating when needed) the lock file at path and tries to lock it without blocking. It
// returns the locked file, or nil when the lock is busy.
//
// Lock files may be unlinked by gc while nobody holds them. A process that opened the old file before the
// unlink would then lock a file nobody else can see, so after locking it checks that path still names the
// same file and starts over when not.
func tryLockFile(path string, how int) (*os.File, error) {
	for range maxRelink {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, err
			}
			f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		}
		if err != nil {
			return nil, err
		}
		ok, err := fsutil.TryFlock(f, how)
		if err != nil || !ok {
			return nil, errors.Join(err, f.Close())
		}
		same, err := sameFile(f, path)
		if err != nil || same {
			if err != nil {
				return nil, errors.Join(err, f.Close())
			}
			return f, nil
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("lock file %s keeps being replaced", path)
}

// tryLockDir locks a folder itself (flock works on folders), as writers do with their temp folders. It
// returns nil when the folder is busy or gone.
func tryLockDir(path string, how int) (*os.File, error) {
	d, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ok, err := fsutil.TryFlock(d, how)
	if err != nil || !ok {
		return nil, errors.Join(err, d.Close())
	}
	same, err := sameFile(d, path)
	if err != nil || !same {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// sameFile reports whether path still names the file f has open.
func sameFile(f *os.File, path string) (bool, error) {
	a, err := f.Stat()
	if err != nil {
		return false, err
	}
	b, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(a, b), nil
}

// sleepCtx waits for d or until ctx is done, whichever comes first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package fsutil

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Flock applies or removes an advisory lock on f with flock(2): how is unix.LOCK_SH, unix.LOCK_EX or
// unix.LOCK_UN, optionally with unix.LOCK_NB. A signal that interrupts the call makes it try again.
//
// Locks belong to the open file, not the process, so two goroutines that open the same path separately
// exclude each other as two processes do, and the kernel drops the lock when the last descriptor of the
// open file closes, also when the process is killed.
func Flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
	}
}

// TryFlock is [Flock] without blocking: it reports false, and no error, when another open file holds a
// conflicting lock.
func TryFlock(f *os.File, how int) (bool, error) {
	err := Flock(f, how|unix.LOCK_NB)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		return false, nil
	default:
		return false, err
	}
}

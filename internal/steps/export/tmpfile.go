package export

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// Files being written by an export (the output before it is published, the flattened intermediate of
// CompressionZstd) can be as large as the image. If imgform dies in the middle, even by SIGKILL where no
// cleanup code runs, they must not stay in the user's output folder. On Linux they are therefore created
// unnamed (open with O_TMPFILE): the kernel frees such a file when its last descriptor closes, so a
// killed export leaves nothing behind. The output gets a name only when it is published (linkat to a
// hidden name, then rename over the final path); qemu-img writes to them through /proc/<pid>/fd/<n>.
//
// Where O_TMPFILE is not supported, the output is a fsutil.AtomicFile (a hidden ".<name>.tmp-*" file,
// flocked while alive, which fsutil.RemoveStaleTemps removes after a kill) and the intermediate a hidden
// ".imgform-flat-*" file in Request.TempDir.

// useTmpfile is false where O_TMPFILE must not be used (tests of the named fallback).
var useTmpfile = true

// workFile is a file an export writes: unnamed when the file system allows, else a named temp file.
type workFile struct {
	f      *os.File           // the file; for atomic, its temp file
	dir    string             // where it lives
	named  string             // the intermediate's path when it has a name
	atomic *fsutil.AtomicFile // the output's fallback
	wrote  error              // the first write error; Commit refuses to publish after one
	done   bool
}

// openUnnamed creates an unnamed file in dir, flocked so that once Commit gives it a name,
// fsutil.RemoveStaleTemps of another process leaves it alone. It returns a nil file, and no error, when
// the file system does not support unnamed files.
func openUnnamed(dir string) (*os.File, error) {
	if !useTmpfile {
		return nil, nil
	}
	// qemu-img opens the file, and Commit names it, through /proc.
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		return nil, nil
	}
	f, err := os.OpenFile(dir, os.O_RDWR|unix.O_TMPFILE, 0o600)
	switch {
	case err == nil:
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EISDIR) || errors.Is(err, unix.EINVAL):
		return nil, nil // EISDIR: a kernel without O_TMPFILE takes it for O_DIRECTORY
	default:
		return nil, err
	}
	if err := fsutil.Flock(f, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, errors.Join(fmt.Errorf("lock the temp file in %s: %w", dir, err), f.Close())
	}
	return f, nil
}

// createOutput starts writing the file that Commit publishes at path.
func createOutput(path string) (*workFile, error) {
	dir := filepath.Dir(path)
	f, err := openUnnamed(dir)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if f != nil {
		return &workFile{f: f, dir: dir}, nil
	}
	a, err := fsutil.CreateAtomic(path, OutputPerm)
	if err != nil {
		return nil, err
	}
	return &workFile{f: a.File(), dir: dir, atomic: a}, nil
}

// createIntermediate creates a scratch file in dir that is never published; pattern names the fallback.
func createIntermediate(dir, pattern string) (*workFile, error) {
	f, err := openUnnamed(dir)
	if err != nil {
		return nil, err
	}
	if f != nil {
		return &workFile{f: f, dir: dir}, nil
	}
	if f, err = os.CreateTemp(dir, pattern); err != nil {
		return nil, err
	}
	return &workFile{f: f, dir: dir, named: f.Name()}, nil
}

// File returns the open file, for reading, seeking and hashing.
func (w *workFile) File() *os.File { return w.f }

// ToolPath is a path another process (qemu-img) can open the file by.
func (w *workFile) ToolPath() string {
	if w.atomic != nil || w.named != "" {
		return w.f.Name()
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), w.f.Fd())
}

// Display names the file in messages.
func (w *workFile) Display() string {
	if w.atomic != nil || w.named != "" {
		return w.f.Name()
	}
	return "an unnamed temp file in " + w.dir
}

// Write writes to the file and remembers the first error.
func (w *workFile) Write(p []byte) (int, error) {
	if w.atomic != nil {
		return w.atomic.Write(p)
	}
	n, err := w.f.Write(p)
	if err != nil && w.wrote == nil {
		w.wrote = err
	}
	return n, err
}

// Commit makes the output durable and publishes it at path with mode OutputPerm, atomically: path holds
// the old content or the new, never a part. The file is closed afterwards, whatever happens.
func (w *workFile) Commit(path string) (err error) {
	if w.atomic != nil {
		return w.atomic.Commit()
	}
	if w.done {
		return fmt.Errorf("commit %s: already committed or aborted", path)
	}
	w.done = true
	tmp := ""
	defer func() {
		if err != nil && tmp != "" {
			err = errors.Join(err, fsutil.RemoveIfExists(tmp))
		}
		// The flock, and with it the guard on the temp name, goes only now that the name is gone.
		err = errors.Join(err, w.f.Close())
	}()
	if w.wrote != nil {
		return fmt.Errorf("commit %s: an earlier write failed: %w", path, w.wrote)
	}
	if err := w.f.Chmod(OutputPerm); err != nil {
		return fmt.Errorf("commit %s: %w", path, err)
	}
	if err := fsutil.SyncFile(w.f); err != nil {
		return fmt.Errorf("commit %s: %w", path, err)
	}
	// linkat cannot replace a file: name the file next to path, then rename it over path. The name is one
	// fsutil.RemoveStaleTemps looks at; the flock keeps it from taking the file for a dead writer's.
	name := filepath.Join(filepath.Dir(path), fsutil.TempPrefix(path)+rand.Text())
	if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", w.f.Fd()), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW); err != nil {
		return fmt.Errorf("commit %s: give the temp file a name: %w", path, err)
	}
	tmp = name
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("commit %s: %w", path, err)
	}
	tmp = ""
	if err := fsutil.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("commit %s: the file is in place, but it may not survive a crash: %w", path, err)
	}
	return nil
}

// Abort discards the file. It is a no-op after Commit, so it can be deferred.
func (w *workFile) Abort() error {
	if w.atomic != nil {
		return w.atomic.Abort()
	}
	if w.done {
		return nil
	}
	w.done = true
	err := w.f.Close()
	if w.named != "" {
		err = errors.Join(err, fsutil.RemoveIfExists(w.named))
	}
	return err
}

package fsutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// AtomicFile is a file that appears at its final path only when [AtomicFile.Commit] succeeds: until then
// the data goes to a temp file in the same folder, so readers of the path see the old content or the new,
// never a part. It streams, so it suits multi-GB images as well as small files.
//
// The usual pattern is:
//
//	f, err := fsutil.CreateAtomic(path, 0o644)
//	if err != nil { ... }
//	defer f.Abort() // no-op after Commit
//	if _, err := io.Copy(f, src); err != nil { return err }
//	return f.Commit()
//
// A crash leaves a hidden ".<name>.tmp-*" file next to path, never a half-written path; see
// [RemoveStaleTemps].
type AtomicFile struct {
	f     *os.File
	lock  *os.File // a second descriptor of the temp file, flocked until the rename: see RemoveStaleTemps
	path  string
	perm  os.FileMode
	done  bool
	wrote error // first write error; Commit refuses to publish after one
}

// TempPrefix is how the temp files of path's writers start: "." and path's base name. The rest of the
// name is ".tmp-" and a random part.
func TempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// CreateAtomic starts writing the file at path. The file gets mode perm exactly (the umask is not applied)
// once committed.
func CreateAtomic(path string, perm os.FileMode) (*AtomicFile, error) {
	// The temp file must sit in the same folder: rename is only atomic within one file system, and only a
	// fsync of that folder makes the rename durable.
	f, err := os.CreateTemp(filepath.Dir(path), TempPrefix(path)+"*")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	// The flock lives on its own descriptor, so it outlasts Close in Commit until the rename is done.
	lock, err := os.Open(f.Name())
	if err == nil {
		if _, err = TryFlock(lock, unix.LOCK_EX); err != nil {
			err = errors.Join(err, lock.Close())
		}
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("create %s: %w", path, err), f.Close(), RemoveIfExists(f.Name()))
	}
	return &AtomicFile{f: f, lock: lock, path: path, perm: perm}, nil
}

// RemoveStaleTemps removes the temp files that writers of path killed before Commit or Abort left next
// to it (a large image's can be gigabytes), and returns their paths. A temp file being written is flocked
// by its writer and stays. Any other flocked ".<name>.tmp-*" file next to path stays too, so other writers
// that follow the same naming and locking (such as an unnamed file given a name just before its rename)
// are safe from it.
func RemoveStaleTemps(path string) ([]string, error) {
	temps, err := filepath.Glob(filepath.Join(filepath.Dir(path), globEscape(TempPrefix(path))+"*"))
	if err != nil {
		return nil, fmt.Errorf("remove stale temp files of %s: %w", path, err)
	}
	var removed []string
	for _, tmp := range temps {
		f, err := os.Open(tmp)
		if err != nil {
			continue // gone already
		}
		ok, err := TryFlock(f, unix.LOCK_EX)
		if err == nil && ok {
			err = RemoveIfExists(tmp)
			if err == nil {
				removed = append(removed, tmp)
			}
		}
		if err = errors.Join(err, f.Close()); err != nil {
			return removed, fmt.Errorf("remove stale temp file: %w", err)
		}
	}
	return removed, nil
}

func globEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(s)
}

// Write writes to the temp file.
func (a *AtomicFile) Write(p []byte) (int, error) {
	n, err := a.f.Write(p)
	if err != nil && a.wrote == nil {
		a.wrote = err
	}
	return n, err
}

// ReadFrom copies r into the temp file, letting io.Copy use the kernel's copy paths when r is a file.
func (a *AtomicFile) ReadFrom(r io.Reader) (int64, error) {
	n, err := a.f.ReadFrom(r)
	if err != nil && a.wrote == nil {
		a.wrote = err
	}
	return n, err
}

// File returns the temp file for callers that need more than Write, such as Seek or Truncate to write a
// sparse image. The caller must not close it.
func (a *AtomicFile) File() *os.File { return a.f }

// Path returns the final path.
func (a *AtomicFile) Path() string { return a.path }

// Commit makes the data durable and moves it to the final path: Chmod, Sync, Close (whose error matters
// on some file systems), Rename, then fsync of the folder so the rename survives a power loss. On error
// the temp file is removed and the final path is left as it was, except when only the last fsync failed:
// then the file is in place and the error says its durability is in doubt.
func (a *AtomicFile) Commit() (err error) {
	if a.done {
		return fmt.Errorf("commit %s: already committed or aborted", a.path)
	}
	a.done = true
	tmp := a.f.Name()
	defer func() {
		if err != nil {
			err = errors.Join(err, RemoveIfExists(tmp))
		}
		// The lock only guards the temp name, which is gone now either way; a close error means nothing.
		_ = a.lock.Close()
	}()
	if a.wrote != nil {
		return errors.Join(fmt.Errorf("commit %s: an earlier write failed: %w", a.path, a.wrote), a.f.Close())
	}
	if err := a.f.Chmod(a.perm); err != nil {
		return errors.Join(fmt.Errorf("commit %s: %w", a.path, err), a.f.Close())
	}
	if err := SyncFile(a.f); err != nil {
		return errors.Join(fmt.Errorf("commit %s: %w", a.path, err), a.f.Close())
	}
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("commit %s: %w", a.path, err)
	}
	if err := os.Rename(tmp, a.path); err != nil {
		return fmt.Errorf("commit %s: %w", a.path, err)
	}
	if err := SyncDir(filepath.Dir(a.path)); err != nil {
		return fmt.Errorf("commit %s: the file is in place, but it may not survive a crash: %w", a.path, err)
	}
	return nil
}

// Abort discards the temp file. It is a no-op after Commit, so it can be deferred.
func (a *AtomicFile) Abort() error {
	if a.done {
		return nil
	}
	a.done = true
	return errors.Join(a.f.Close(), RemoveIfExists(a.f.Name()), a.lock.Close())
}

// WriteFileAtomic is os.WriteFile made atomic and durable with [CreateAtomic]: path holds its old content
// or data, never a part, and gets mode perm exactly.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := CreateAtomic(path, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return errors.Join(fmt.Errorf("write %s: %w", path, err), f.Abort())
	}
	return f.Commit()
}

// WriteFileOnce writes data to path, atomically and durably, unless path exists: of several writers that
// race, the first wins and the others get an error wrapping fs.ErrExist, so all of them can then read the
// same content. The file is linked into place (link(2) never replaces), so no reader sees a part of it.
func WriteFileOnce(path string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), TempPrefix(path))
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() { err = errors.Join(err, RemoveIfExists(tmp)) }()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = SyncFile(f)
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	getter "github.com/hashicorp/go-getter/v2"
)

// Temp files live next to their final name so that the rename that publishes them is atomic; the leading
// dot keeps them out of casual listings and the ".part" suffix says what they are when a process killed
// hard leaves one behind.
const tempPattern = ".fetch-*.part"

// newTemp creates an empty temp file in dir and returns its name; go-getter reopens it by name.
func newTemp(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", errors.Join(err, os.Remove(f.Name()))
	}
	return f.Name(), nil
}

// removeTemp deletes a temp file that was not published; the cleanup error joins the one that caused it.
func removeTemp(name string, cause error) error {
	if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return errors.Join(cause, fmt.Errorf("remove temp file: %w", err))
	}
	return cause
}

// publish makes a complete, verified temp file durable and visible under final: fsync the data, set the
// mode, rename, fsync the folder so that the rename itself survives a crash.
func publish(tmp, final string, perm fs.FileMode) error {
	f, err := os.OpenFile(tmp, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return errors.Join(err, f.Close())
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return syncDir(filepath.Dir(final))
}

// syncDir fsyncs a folder, which persists the names created or renamed in it.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		return errors.Join(err, d.Close())
	}
	return d.Close()
}

// copyVerified copies src to dst atomically, hashing while copying so that the copy is checked in the same
// pass: against want when it is set, else the computed sum is only reported. Nothing is left at dst when
// the copy fails or does not match.
func copyVerified(ctx context.Context, src, dst string, alg Algorithm, want Checksum, display string) (Checksum, int64, error) {
	tmp, err := newTemp(filepath.Dir(dst))
	if err != nil {
		return Checksum{}, 0, err
	}
	sum, n, err := copyHashed(ctx, src, tmp, alg)
	if err == nil && !want.IsZero() && sum != want {
		err = &MismatchError{URL: display, Expected: want, Actual: sum}
	}
	if err == nil {
		err = publish(tmp, dst, 0o644)
	}
	if err != nil {
		return Checksum{}, 0, removeTemp(tmp, err)
	}
	return sum, n, nil
}

// copyHashed copies src into the existing file tmp and digests what it copies with alg.
func copyHashed(ctx context.Context, src, tmp string, alg Algorithm) (sum Checksum, n int64, err error) {
	h := alg.newHash()
	in, err := os.Open(src)
	if err != nil {
		return Checksum{}, 0, err
	}
	defer closeErr(in, &err)
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return Checksum{}, 0, err
	}
	defer closeErr(out, &err)
	n, err = getter.Copy(ctx, io.MultiWriter(out, h), in)
	if err != nil {
		return Checksum{}, n, err
	}
	return Checksum{Type: alg, Value: fmt.Sprintf("%x", h.Sum(nil))}, n, nil
}

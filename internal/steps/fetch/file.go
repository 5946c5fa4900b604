package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	getter "github.com/hashicorp/go-getter/v2"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// createDest starts writing dst through imgform's atomic writer: the bytes go to a hidden temp file next
// to dst, which becomes dst (mode 0644, a private writable copy) only on Commit, after an fsync, and is
// removed on Abort. A process killed in between leaves the temp file, which fsutil.RemoveStaleTemps
// recognises. dst's folder is created if need be.
func createDest(dst string) (*fsutil.AtomicFile, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	return fsutil.CreateAtomic(dst, 0o644)
}

// copyVerified copies src, of size bytes, to dst atomically, hashing while copying so that the copy is
// checked in the same pass: against want when it is set, else the computed sum is only reported. b checks
// the free space of dst's file system before and while copying. Nothing is left at dst when the copy fails
// or does not match.
func copyVerified(ctx context.Context, src, dst string, alg Algorithm, want Checksum, display string, b bound, size int64) (Checksum, int64, error) {
	out, err := createDest(dst)
	if err != nil {
		return Checksum{}, 0, err
	}
	b.dir = filepath.Dir(dst)
	sum, n, err := copyHashed(ctx, src, out, alg, b, size)
	if err == nil && !want.IsZero() && sum != want {
		err = &MismatchError{URL: display, Expected: want, Actual: sum}
	}
	if err != nil {
		return Checksum{}, 0, errors.Join(err, out.Abort())
	}
	if err := out.Commit(); err != nil {
		return Checksum{}, 0, err
	}
	return sum, n, nil
}

// errCannotClone says that dst's file system cannot share src's extents; the caller copies instead.
var errCannotClone = errors.New("the file system cannot clone files")

// cloneVerified makes dst a clone of src that shares its extents (a reflink), where dst's file system can:
// no bytes are copied and no space is used until one of the two is written, and a write to either never
// shows in the other, unlike a hard link, whose source a user's tool may rewrite in place under the cache.
// The clone, not src, is then hashed and checked against want: what is stored is what was checked, even if
// src changes meanwhile. It returns errCannotClone, leaving nothing at dst, when the file systems cannot
// clone (ext4, another file system than src's), for the caller to copy.
func cloneVerified(ctx context.Context, src, dst string, alg Algorithm, want Checksum, display string) (sum Checksum, n int64, err error) {
	in, err := os.Open(src)
	if err != nil {
		return Checksum{}, 0, err
	}
	defer closeErr(in, &err)
	out, err := createDest(dst)
	if err != nil {
		return Checksum{}, 0, err
	}
	if err := cloneFile(out.File(), in); err != nil {
		return Checksum{}, 0, errors.Join(err, out.Abort())
	}
	h := alg.newHash()
	n, err = getter.Copy(ctx, h, io.NewSectionReader(out.File(), 0, 1<<62))
	sum = Checksum{Type: alg, Value: fmt.Sprintf("%x", h.Sum(nil))}
	if err == nil && !want.IsZero() && sum != want {
		err = &MismatchError{URL: display, Expected: want, Actual: sum}
	}
	if err == nil {
		err = out.Commit()
	}
	if err != nil {
		return Checksum{}, 0, errors.Join(err, out.Abort())
	}
	return sum, n, nil
}

// copyHashed copies src, of size bytes, into out within the bound b and digests what it copies with alg.
func copyHashed(ctx context.Context, src string, out io.Writer, alg Algorithm, b bound, size int64) (sum Checksum, n int64, err error) {
	h := alg.newHash()
	f, err := os.Open(src)
	if err != nil {
		return Checksum{}, 0, err
	}
	in := b.guard(f, size, nil)
	defer closeErr(in, &err)
	n, err = getter.Copy(ctx, io.MultiWriter(out, h), in)
	if err != nil {
		return Checksum{}, n, err
	}
	return Checksum{Type: alg, Value: fmt.Sprintf("%x", h.Sum(nil))}, n, nil
}

// Package fetch gets the source image of a build: it downloads it over http or https through go-getter,
// or copies a local file (a path or a file: URL), and verifies it against a declared checksum or a sums
// file. Other go-getter sources (s3::, gcs::, git::, hg:: and their shorthands) are refused, at plan time,
// with an error that names the supported ones; getter.go says why. A partial or mismatched download never
// becomes visible: it goes to a temp file next to its destination (fsutil's atomic writer) and is renamed
// into place once verified. The package keeps no cache of its own
// (the engine stores what it fetched in its content-addressed store) and never prints; progress goes to a
// callback.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// Fetcher fetches source images. It holds no state: the zero value is ready, and it is safe for
// concurrent use.
type Fetcher struct {
	// freeSpace and spaceEvery replace, in tests, the statfs that tells the free space of a destination's
	// file system and the bytes between two checks (space.go).
	freeSpace  func(dir string) (int64, error)
	spaceEvery int64
}

// Request says what to fetch.
type Request struct {
	// URL is the source: an http(s) URL, a file: URL or a plain path. A local file is used where it is
	// unless Dest is set.
	URL string

	// Checksum is "" when none is declared (Fetch then reports the file's sha256), "type:value" with type
	// sha256, sha512, sha1 or md5, or "file:<url or path>" naming a GNU- or BSD-style sums file.
	Checksum string

	// BaseDir resolves relative paths in URL, Checksum and Dest, typically the config's folder.
	BaseDir string

	// Dest is where the image is written, atomically, as a private writable copy (mode 0644). A remote
	// source needs one; a local file is copied there when it is set and used in place when it is not.
	Dest string

	// Progress, if set, is called as download bytes arrive with the bytes so far and the total, -1 when
	// the server does not say. It runs on the fetching goroutine.
	Progress func(done, total int64)

	// Warn, if set, is told what the caller should pass on to the user without failing: a sums file whose
	// PGP signature imgform did not check (pgp.go).
	Warn func(text string)

	// MaxSize bounds a download: a server that announces more is refused before a byte is written, one
	// that sends more is cut off, both with a *TooLargeError. 0 means DefaultMaxSize (64 GiB), a negative
	// value no bound. Whatever the bound, a download or copy that does not fit in the free space of Dest's
	// file system fails early with a *SpaceError (space.go).
	MaxSize int64
}

// Result says where the fetched image is.
type Result struct {
	Path       string   // the image: Dest, or the local file itself
	Checksum   Checksum // the verified declared checksum, or the computed sha256 when none was declared
	Size       int64    // in bytes
	Downloaded bool     // whether bytes came over the network (false for a local file)
}

// Fetch gets the image req describes and verifies it. A mismatch is a *MismatchError; a sums file without
// the image's name is a *NoEntryError; a malformed sums file is a *SyntaxError; a download above its bound
// is a *TooLargeError; one that does not fit on the destination's file system is a *SpaceError. After any
// error nothing is left at Dest, and ctx cancellation stops a download between two reads.
func (f *Fetcher) Fetch(ctx context.Context, req Request) (Result, error) {
	src, err := parseSource(req.URL, req.BaseDir)
	if err != nil {
		return Result{}, err
	}
	if req.Dest != "" && !filepath.IsAbs(req.Dest) {
		if req.BaseDir == "" {
			return Result{}, fmt.Errorf("destination %q is a relative path but the request has no base directory", req.Dest)
		}
		req.Dest = filepath.Join(req.BaseDir, req.Dest)
	}
	sum, err := f.resolveChecksum(ctx, req, src)
	if err != nil {
		return Result{}, err
	}
	if src.local != "" {
		return f.fetchLocal(ctx, req, src, sum)
	}
	if req.Dest == "" {
		return Result{}, fmt.Errorf("fetch %s: a remote source needs a destination to download to", src.display)
	}
	return f.download(ctx, req, src, sum)
}

// download fetches a remote source through go-getter into a temp file next to Dest, verifies it and
// publishes it at Dest.
func (f *Fetcher) download(ctx context.Context, req Request, src source, want Checksum) (Result, error) {
	out, err := createDest(req.Dest)
	if err != nil {
		return Result{}, fmt.Errorf("fetch %s: %w", src.display, err)
	}
	res, err := downloadTo(ctx, req, src, want, out, bound{limit: limitFor(req.MaxSize), space: f.spaceCheck()})
	if err != nil {
		return Result{}, errors.Join(err, out.Abort()) // Abort is a no-op after a failed Commit
	}
	return res, nil
}

// downloadTo fills out and commits it at req.Dest; the caller aborts out on error.
func downloadTo(ctx context.Context, req Request, src source, want Checksum, out *fsutil.AtomicFile, b bound) (Result, error) {
	// go-getter opens the temp file by name, writes through its own descriptor and verifies a declared
	// checksum after downloading; Commit then syncs and renames that same file.
	tmp := out.File().Name()
	if err := getFile(ctx, src, want, tmp, b, req.Progress); err != nil {
		var mismatch *MismatchError
		if errors.As(err, &mismatch) {
			return Result{}, err
		}
		return Result{}, fmt.Errorf("download %s: %w", src.display, err)
	}
	sum := want
	if sum.IsZero() {
		var err error
		if sum, _, err = hashFile(ctx, SHA256, tmp); err != nil {
			return Result{}, fmt.Errorf("hash %s: %w", src.display, err)
		}
	}
	fi, err := out.File().Stat()
	if err != nil {
		return Result{}, fmt.Errorf("fetch %s: %w", src.display, err)
	}
	if err := out.Commit(); err != nil {
		return Result{}, fmt.Errorf("fetch %s: %w", src.display, err)
	}
	return Result{Path: req.Dest, Checksum: sum, Size: fi.Size(), Downloaded: true}, nil
}

// fetchLocal verifies a local file and uses it in place, or clones or copies it to Dest while verifying it.
// It never hard-links: whoever asks for a Dest may write to it, and a write through a link would change the
// source (and a tool that rewrites the source in place would change the cache). A clone shares the source's
// blocks until either is written, where the file systems allow (cloneVerified); a copy is checked against
// the free space of Dest's file system as a download is, but not bounded: the configuration chose the file.
func (f *Fetcher) fetchLocal(ctx context.Context, req Request, src source, want Checksum) (Result, error) {
	fi, err := os.Stat(src.local)
	if err != nil {
		return Result{}, fmt.Errorf("source: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Result{}, fmt.Errorf("source %s is not a regular file", src.local)
	}
	alg := want.Type
	if want.IsZero() {
		alg = SHA256
	}
	if req.Dest != "" {
		sum, size, err := cloneVerified(ctx, src.local, req.Dest, alg, want, src.local)
		if errors.Is(err, errCannotClone) {
			sum, size, err = copyVerified(ctx, src.local, req.Dest, alg, want, src.local, bound{space: f.spaceCheck()}, fi.Size())
		}
		if err != nil {
			return Result{}, fmt.Errorf("copy %s to %s: %w", src.local, req.Dest, err)
		}
		return Result{Path: req.Dest, Checksum: sum, Size: size}, nil
	}
	sum, size, err := hashFile(ctx, alg, src.local)
	if err != nil {
		return Result{}, fmt.Errorf("hash %s: %w", src.local, err)
	}
	if !want.IsZero() && sum != want {
		return Result{}, &MismatchError{URL: src.local, Expected: want, Actual: sum}
	}
	return Result{Path: src.local, Checksum: sum, Size: size}, nil
}

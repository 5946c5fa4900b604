// Package fetch gets the source image of a build: it downloads it through go-getter (http, https, s3, gcs,
// git, hg; local paths and file URLs are used in place), verifies it against a declared checksum or a sums
// file, and keeps it in a download cache keyed by checksum, so a source already fetched is never fetched
// again. A partial or mismatched download never becomes visible: it goes to a temp file next to its final
// name and is published by an atomic rename once verified. The package never prints; progress goes to a
// callback.
package fetch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	getter "github.com/hashicorp/go-getter"
)

// Fetcher fetches source images. The zero value works without a cache, in which case every remote request
// must name a Dest. A Fetcher is safe for concurrent use and must not be copied after first use.
type Fetcher struct {
	// CacheDir holds downloaded objects by checksum (see cache.go for the layout); "" disables the cache.
	CacheDir string

	mu   sync.Mutex
	busy map[Checksum]chan struct{} // checksums being fetched, closed when done
}

// Request says what to fetch.
type Request struct {
	// URL is the source: an http(s) URL, any other go-getter source (s3::, gcs::, git::...), a file:// URL
	// or a plain path. A local file is used where it is, never copied into the cache.
	URL string

	// Checksum is "" when none is declared (Fetch then reports the file's sha256), "type:value" with type
	// sha256, sha512, sha1 or md5, or "file:<url or path>" naming a GNU- or BSD-style sums file.
	Checksum string

	// BaseDir resolves relative paths in URL, Checksum and Dest, typically the config's folder.
	BaseDir string

	// Dest, if set, is where the image is written (atomically, as a private writable copy) instead of
	// being used from the cache or in place.
	Dest string

	// Progress, if set, is called as download bytes arrive with the bytes so far and the total, -1 when
	// the server does not say. It runs on the fetching goroutine.
	Progress func(done, total int64)
}

// Result says where the fetched image is.
type Result struct {
	Path       string   // the image: the cache object (read-only), Dest, or the local file itself
	Checksum   Checksum // the verified declared checksum, or the computed sha256 when none was declared
	Size       int64    // in bytes
	Downloaded bool     // whether bytes came over the network for this call (false for a cache hit or a local file)
}

// Fetch gets the image req describes and verifies it. A mismatch is a *MismatchError; a sums file without
// the image's name is a *NoEntryError; a malformed sums file is a *SyntaxError. After any error nothing is
// left in the cache or at Dest, and ctx cancellation stops a download between two reads.
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
	sum, err := f.ResolveChecksum(ctx, req)
	if err != nil {
		return Result{}, err
	}
	if src.local != "" {
		return fetchLocal(ctx, req, src, sum)
	}
	if f.CacheDir == "" && req.Dest == "" {
		return Result{}, fmt.Errorf("fetch %s: no cache folder and no destination to download to", src.display)
	}
	if !sum.IsZero() && f.CacheDir != "" {
		unlock, err := f.lockKey(ctx, sum)
		if err != nil {
			return Result{}, fmt.Errorf("fetch %s: %w", src.display, err)
		}
		defer unlock()
		path, size, ok, err := f.lookup(ctx, sum, false)
		if err != nil {
			return Result{}, err
		}
		if ok {
			return deliver(ctx, req, Result{Path: path, Checksum: sum, Size: size})
		}
	}
	res, err := f.download(ctx, req, src, sum)
	if err != nil {
		return Result{}, err
	}
	return deliver(ctx, req, res)
}

// download fetches a remote source through go-getter into a temp file, verifies it and publishes it in the
// cache, or at Dest when there is no cache.
func (f *Fetcher) download(ctx context.Context, req Request, src source, want Checksum) (Result, error) {
	alg := want.Type
	if want.IsZero() {
		alg = SHA256 // the key of an undeclared source: the object lands under the sha256 it turns out to have
	}
	dir := filepath.Dir(req.Dest)
	if f.CacheDir != "" {
		dir = filepath.Join(f.CacheDir, string(alg))
	}
	tmp, err := newTemp(dir)
	if err != nil {
		return Result{}, fmt.Errorf("fetch %s: %w", src.display, err)
	}
	res, err := f.downloadTo(ctx, req, src, want, alg, tmp)
	if err != nil {
		return Result{}, removeTemp(tmp, err)
	}
	return res, nil
}

// downloadTo fills tmp and publishes it; the caller removes tmp on error.
func (f *Fetcher) downloadTo(ctx context.Context, req Request, src source, want Checksum, alg Algorithm, tmp string) (Result, error) {
	client := &getter.Client{
		Ctx:             ctx,
		Src:             src.withChecksum(want), // go-getter verifies a declared checksum after downloading
		Dst:             tmp,
		Pwd:             req.BaseDir,
		Mode:            getter.ClientModeFile,
		Getters:         newGetters(0),
		Decompressors:   noDecompressors,
		DisableSymlinks: true,
	}
	if req.Progress != nil {
		client.ProgressListener = progressTracker{report: req.Progress}
	}
	if err := client.Get(); err != nil {
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("download %s: %w", src.display, ctx.Err())
		}
		var mismatch *MismatchError
		if err = fromGetterError(err, alg, src.display); errors.As(err, &mismatch) {
			return Result{}, err
		}
		return Result{}, fmt.Errorf("download %s: %w", src.display, err)
	}
	sum := want
	if sum.IsZero() {
		var err error
		if sum, _, err = hashFile(ctx, alg, tmp); err != nil {
			return Result{}, fmt.Errorf("hash %s: %w", src.display, err)
		}
	}
	final, perm := req.Dest, os.FileMode(0o644)
	if f.CacheDir != "" {
		final, perm = f.objectPath(sum), 0o444 // read-only: a cache object is shared by every build
	}
	if err := publish(tmp, final, perm); err != nil {
		return Result{}, fmt.Errorf("fetch %s: %w", src.display, err)
	}
	fi, err := os.Stat(final)
	if err != nil {
		return Result{}, fmt.Errorf("fetch %s: %w", src.display, err)
	}
	if f.CacheDir != "" {
		if err := writeRecord(final, recordOf(sum, fi)); err != nil {
			return Result{}, err
		}
	}
	return Result{Path: final, Checksum: sum, Size: fi.Size(), Downloaded: true}, nil
}

// deliver copies a cached object to Dest when the request wants one. It is a copy, not a hard link,
// because whoever asks for a Dest may write to it, and a write through a link would corrupt the cache.
func deliver(ctx context.Context, req Request, res Result) (Result, error) {
	if req.Dest == "" || res.Path == req.Dest {
		return res, nil
	}
	_, size, err := copyVerified(ctx, res.Path, req.Dest, res.Checksum.Type, res.Checksum, res.Path)
	if err != nil {
		return Result{}, fmt.Errorf("copy %s to %s: %w", res.Path, req.Dest, err)
	}
	res.Path, res.Size = req.Dest, size
	return res, nil
}

// fetchLocal verifies a local file and uses it in place, or copies it to Dest while verifying it.
func fetchLocal(ctx context.Context, req Request, src source, want Checksum) (Result, error) {
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
		sum, size, err := copyVerified(ctx, src.local, req.Dest, alg, want, src.local)
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

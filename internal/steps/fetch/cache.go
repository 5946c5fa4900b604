package fetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The download cache holds one read-only file per checksum:
//
//	<CacheDir>/<type>/<hex>            the object, mode 0444, published by rename only once verified
//	<CacheDir>/<type>/<hex>.verified   the record of that verification (see below)
//	<CacheDir>/<type>/.fetch-*.part    downloads in progress (or left by a process killed hard)
//
// Reuse trusts the record instead of re-hashing: the object's size, mtime and inode as they were when
// its content was last hashed. Objects are only ever created by renaming a verified file, so the name is
// the proof of the content, and re-hashing a multi-gigabyte image on every plan and apply would cost
// seconds to minutes each time for nothing. What can still change an object is a write to it (a
// tool opening the base image writable despite mode 0444) or a replacement; both change the mtime or the
// inode, and the object is then hashed again once: a match renews the record, a mismatch deletes the
// object and counts as a miss. Silent bit rot passes unseen: a full re-hash is the job of `imgform cache
// verify`, through Verify.

// sidecarSuffix names the verification record of an object.
const sidecarSuffix = ".verified"

// record is the verification record of a cache object.
type record struct {
	Checksum string `json:"checksum"`
	Size     int64  `json:"size"`
	MtimeNS  int64  `json:"mtime_ns"`
	Inode    uint64 `json:"inode"`
}

func recordOf(sum Checksum, fi fs.FileInfo) record {
	return record{Checksum: sum.String(), Size: fi.Size(), MtimeNS: fi.ModTime().UnixNano(), Inode: inode(fi)}
}

// objectPath is where the object with checksum sum lives.
func (f *Fetcher) objectPath(sum Checksum) string {
	return filepath.Join(f.CacheDir, string(sum.Type), sum.Value)
}

// Cached reports whether the cache holds an object with checksum sum and where, without downloading. An
// object whose verification record no longer matches the file is hashed once, and deleted when it turns
// out corrupt: a corrupt entry is a miss, never a wrong result.
func (f *Fetcher) Cached(ctx context.Context, sum Checksum) (path string, ok bool, err error) {
	path, _, ok, err = f.lookup(ctx, sum, false)
	return path, ok, err
}

// Verify re-hashes the cached object with checksum sum whatever its record says, deletes it when it does
// not match and reports whether a good object remains.
func (f *Fetcher) Verify(ctx context.Context, sum Checksum) (ok bool, err error) {
	_, _, ok, err = f.lookup(ctx, sum, true)
	return ok, err
}

// lookup finds the object for sum; rehash ignores the verification record.
func (f *Fetcher) lookup(ctx context.Context, sum Checksum, rehash bool) (path string, size int64, ok bool, err error) {
	if f.CacheDir == "" || sum.IsZero() {
		return "", 0, false, nil
	}
	path = f.objectPath(sum)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", 0, false, nil
	case err != nil:
		return "", 0, false, fmt.Errorf("cache: %w", err)
	case !fi.Mode().IsRegular():
		return "", 0, false, fmt.Errorf("cache: %s is not a regular file", path)
	}
	if !rehash && readRecord(path) == recordOf(sum, fi) {
		return path, fi.Size(), true, nil
	}
	actual, _, err := hashFile(ctx, sum.Type, path)
	if err != nil {
		return "", 0, false, fmt.Errorf("cache: verify %s: %w", path, err)
	}
	if actual != sum {
		if err := f.evict(path); err != nil {
			return "", 0, false, fmt.Errorf("cache: %s does not match its checksum and cannot be removed: %w", path, err)
		}
		return "", 0, false, nil
	}
	// Stat again: the record must describe the file as it was hashed, not as first seen.
	if fi, err = os.Stat(path); err != nil {
		return "", 0, false, fmt.Errorf("cache: %w", err)
	}
	if err := writeRecord(path, recordOf(sum, fi)); err != nil {
		return "", 0, false, err
	}
	return path, fi.Size(), true, nil
}

// evict removes a corrupt object and its record.
func (f *Fetcher) evict(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if rerr := os.Remove(path + sidecarSuffix); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}

// readRecord returns the record of the object at path; a missing or unreadable record is the zero record,
// which matches no file and so only costs a re-hash.
func readRecord(path string) record {
	data, err := os.ReadFile(path + sidecarSuffix)
	if err != nil {
		return record{}
	}
	var r record
	if json.Unmarshal(data, &r) != nil {
		return record{}
	}
	return r
}

// writeRecord replaces the record of the object at path through a temp file and a rename, so a reader
// never sees half a record. It skips the fsyncs: a lost record only costs a re-hash.
func writeRecord(path string, r record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("cache: record: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".record-*.part")
	if err != nil {
		return fmt.Errorf("cache: record: %w", err)
	}
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path+sidecarSuffix)
	}
	if err != nil {
		return fmt.Errorf("cache: record: %w", removeTemp(tmp.Name(), err))
	}
	return nil
}

// lockKey serialises the fetches of one checksum within this process, so that two images built in
// parallel from the same source download it once: the second finds the first one's object in the cache.
// Waiting ends with ctx. Other processes are not excluded; at worst they download the same bytes too, and
// the atomic renames keep the object whole.
func (f *Fetcher) lockKey(ctx context.Context, key Checksum) (unlock func(), err error) {
	for {
		f.mu.Lock()
		if f.busy == nil {
			f.busy = make(map[Checksum]chan struct{})
		}
		held, busy := f.busy[key]
		if !busy {
			done := make(chan struct{})
			f.busy[key] = done
			f.mu.Unlock()
			return func() {
				f.mu.Lock()
				delete(f.busy, key)
				f.mu.Unlock()
				close(done)
			}, nil
		}
		f.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

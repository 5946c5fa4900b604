package step

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// FileHasher hashes local files once and remembers the result by path, size, mtime and inode, in a small
// JSON file in the store, so a plan over a big local source image does not read it again.
type FileHasher struct {
	path    string
	mu      sync.Mutex
	entries map[string]fileHashEntry
	dirty   bool
}

type fileHashEntry struct {
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtime_ns"`
	Inode   uint64 `json:"inode"`
	Dev     uint64 `json:"dev"`
	SHA256  string `json:"sha256"`
}

func OpenFileHasher(storeDir string) *FileHasher {
	fh := &FileHasher{path: filepath.Join(storeDir, "filehashes.json"), entries: map[string]fileHashEntry{}}
	if b, err := os.ReadFile(fh.path); err == nil {
		// A damaged file only costs rehashing.
		_ = json.Unmarshal(b, &fh.entries)
	}
	return fh
}

func statEntry(fi os.FileInfo) fileHashEntry {
	e := fileHashEntry{Size: fi.Size(), MtimeNs: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Inode, e.Dev = st.Ino, uint64(st.Dev)
	}
	return e
}

// Hash returns the hex sha256 of a file's content.
func (fh *FileHasher) Hash(ctx context.Context, path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%s is a folder, not a file", path)
	}
	want := statEntry(fi)
	fh.mu.Lock()
	e, ok := fh.entries[abs]
	fh.mu.Unlock()
	if ok && e.Size == want.Size && e.MtimeNs == want.MtimeNs && e.Inode == want.Inode && e.Dev == want.Dev {
		return e.SHA256, nil
	}
	sum, _, err := fsutil.HashFile(ctx, abs)
	if err != nil {
		return "", err
	}
	want.SHA256 = sum
	fh.mu.Lock()
	fh.entries[abs] = want
	fh.dirty = true
	fh.mu.Unlock()
	return sum, nil
}

// Save writes the remembered hashes back, atomically; a failure only costs rehashing next time.
func (fh *FileHasher) Save() error {
	fh.mu.Lock()
	defer fh.mu.Unlock()
	if !fh.dirty {
		return nil
	}
	b, err := json.Marshal(fh.entries)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(fh.path, b, 0o644); err != nil {
		return err
	}
	fh.dirty = false
	return nil
}

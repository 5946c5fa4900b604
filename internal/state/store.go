package state

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// layoutVersion is written to the VERSION file of a store. Bump it when the folder layout changes in a way
// older builds would misread; Open then refuses stores it does not understand instead of corrupting them.
const layoutVersion = "imgform-store 1\n"

// cacheDirTag marks the store as a cache for backup tools (https://bford.info/cachedir/).
const cacheDirTag = "Signature: 8a477f597d28d172789f06886806bc55\n" +
	"# This file is a cache directory tag created by imgform.\n" +
	"# For information about cache directory tags, see https://bford.info/cachedir/\n"

// EnvCacheDir names the environment variable that overrides [DefaultDir].
const EnvCacheDir = "IMGFORM_CACHE_DIR"

// ErrStoreLayout is returned by [Open] when the folder holds a store of a layout this build does not know.
var ErrStoreLayout = errors.New("unknown store layout")

// Store is a content-addressed store of step results rooted at a folder. It is safe for concurrent use by
// goroutines and by processes; see the package documentation for how.
//
// The exported fields may be set right after [Open] and must not change while the store is in use.
type Store struct {
	// Now is the clock used for created and last-used times, lock holder times and gc ages. Tests replace
	// it; it defaults to time.Now.
	Now func() time.Time

	// Logf, when set, receives one line for every decision worth explaining later, such as why a lookup
	// missed ("metadata unreadable: ..."). It answers "why did this step re-run?"; nil discards.
	Logf func(format string, args ...any)

	root string
	host string
	pid  int

	// pollMin and pollMax bound the delay between two attempts to take a busy lock.
	pollMin, pollMax time.Duration
}

// DefaultDir returns where the store lives when the user does not say: $IMGFORM_CACHE_DIR when set, else
// "imgform" inside the user's cache folder (os.UserCacheDir, e.g. ~/.cache/imgform).
func DefaultDir() (string, error) {
	if dir := os.Getenv(EnvCacheDir); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache folder (set %s to choose one): %w", EnvCacheDir, err)
	}
	return filepath.Join(base, "imgform"), nil
}

// Open opens the store in dir, creating the folder and its layout when missing.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("open store: empty folder name")
	}
	// Object paths end up in qcow2 backing-file headers and QEMU command lines, which must not depend on
	// the working folder of the process that wrote them.
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	// Private to its user: the layers hold whatever the builds wrote into their guests, the seed ISOs
	// the user-data with its sensitive values. A folder that exists keeps its mode (a user may share it).
	for _, sub := range []string{"", "objects", "locks", "records"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if err := ensureFile(filepath.Join(root, "VERSION"), layoutVersion, true); err != nil {
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	if err := ensureFile(filepath.Join(root, "CACHEDIR.TAG"), cacheDirTag, false); err != nil {
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return &Store{
		Now:     time.Now,
		root:    root,
		host:    host,
		pid:     os.Getpid(),
		pollMin: 20 * time.Millisecond,
		pollMax: time.Second,
	}, nil
}

// ensureFile creates path with content when it is missing. With strict, an existing file must hold exactly
// content: that is how a store of another layout is detected.
func ensureFile(path, content string, strict bool) error {
	got, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fsutil.WriteFileAtomic(path, []byte(content), 0o644)
	case err != nil:
		return err
	case strict && !bytes.Equal(got, []byte(content)):
		return fmt.Errorf("%w: %s says %q, this imgform understands %q", ErrStoreLayout, path,
			bytes.TrimSpace(got), layoutVersion[:len(layoutVersion)-1])
	}
	return nil
}

// Dir returns the absolute path of the store's folder.
func (s *Store) Dir() string { return s.root }

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Store) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

func (s *Store) objectsDir() string     { return filepath.Join(s.root, "objects") }
func (s *Store) shardDir(k Key) string  { return filepath.Join(s.objectsDir(), k.shard()) }
func (s *Store) objectDir(k Key) string { return filepath.Join(s.shardDir(k), k.String()) }
func (s *Store) locksDir() string       { return filepath.Join(s.root, "locks") }
func (s *Store) buildLockPath(k Key) string {
	return filepath.Join(s.locksDir(), k.shard(), k.String()+".build")
}
func (s *Store) useLockPath(k Key) string {
	return filepath.Join(s.locksDir(), k.shard(), k.String()+".use")
}

// Names inside an object folder and prefixes of the folders that are not objects.
const (
	metaName  = "meta.json"
	dataName  = "data"
	tmpPrefix = ".tmp-"
	delPrefix = ".del-"
)

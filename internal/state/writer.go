package state

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// maxTempAttempts bounds how often Begin retries when gc removes its fresh temp folder under it.
const maxTempAttempts = 10

// Writer writes a new object: the step puts its files into [Writer.Dir], then [Writer.Commit] publishes them
// under the key in one atomic rename, or [Writer.Abort] throws them away. Until then nothing is visible to
// lookups. If the process dies first, the temp folder stays behind, ignored, until gc removes it.
//
// Typical use:
//
//	w, err := st.Begin(key, state.Info{Kind: "seed", Image: img, Step: step})
//	if err != nil { ... }
//	defer w.Abort() // no-op after Commit
//	... write w.Dir()/seed.iso ...
//	obj, err := w.Commit()
type Writer struct {
	s         *Store
	key       Key
	info      Info
	parentSum string // SHA256 of the parent when the write began
	tmp       string
	lock      *os.File // the temp folder, flocked so gc knows it is alive
	// parentW is the writer of a parent not yet committed when this write began (see BeginAfter).
	parentW *Writer

	mu   sync.Mutex
	done bool
	// sum is the digest this writer committed; shared says another writer's object was kept instead.
	sum    string
	shared bool
}

// Begin starts writing the object under key. Several writers of one key may run at once (the first commit
// wins and the others share it); take [Store.LockKey] first to do the work only once.
func (s *Store) Begin(key Key, info Info) (*Writer, error) {
	return s.begin(key, info, nil)
}

// BeginAfter starts writing an object whose parent is still being written by parent: a VM layer cut while
// the guest runs on, where the next layer must exist before the previous one is committed. Commit then
// requires that parent committed first, and its own files (not another writer's), since this object was
// built on exactly those.
func (s *Store) BeginAfter(key Key, info Info, parent *Writer) (*Writer, error) {
	if parent == nil || info.Parent != parent.key {
		return nil, fmt.Errorf("begin %s: the parent writer does not write the parent %s", key.Short(), info.Parent.Short())
	}
	return s.begin(key, info, parent)
}

func (s *Store) begin(key Key, info Info, parentW *Writer) (*Writer, error) {
	if key.IsZero() {
		return nil, errors.New("begin: zero key")
	}
	if err := info.validate(); err != nil {
		return nil, fmt.Errorf("begin %s: %w", key.Short(), err)
	}
	info.Attrs = maps.Clone(info.Attrs)
	var parentSum string
	if !info.Parent.IsZero() && parentW == nil {
		// The new object is built on the parent as it is now; remember which content that was.
		parent, err := s.load(info.Parent)
		if err != nil {
			return nil, fmt.Errorf("begin %s: parent %s is not usable: %w", key.Short(), info.Parent.Short(), err)
		}
		parentSum = parent.SHA256
	}
	shard := s.shardDir(key)
	if err := os.MkdirAll(shard, 0o755); err != nil {
		return nil, fmt.Errorf("begin %s: %w", key.Short(), err)
	}
	for range maxTempAttempts {
		// The temp folder sits next to the final one: see the package documentation.
		tmp, err := os.MkdirTemp(shard, tmpPrefix+key.String()+"-")
		if err != nil {
			return nil, fmt.Errorf("begin %s: %w", key.Short(), err)
		}
		lock, err := tryLockDir(tmp, unix.LOCK_EX)
		if err != nil {
			return nil, fmt.Errorf("begin %s: %w", key.Short(), err)
		}
		if lock == nil {
			// gc saw the folder unlocked in the instant after MkdirTemp and is removing it.
			continue
		}
		w := &Writer{s: s, key: key, info: info, parentSum: parentSum, tmp: tmp, lock: lock, parentW: parentW}
		err = os.Chmod(tmp, 0o755)
		if err == nil {
			err = os.Mkdir(filepath.Join(tmp, dataName), 0o755)
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("begin %s: %w", key.Short(), err), w.Abort())
		}
		return w, nil
	}
	return nil, fmt.Errorf("begin %s: temp folder kept disappearing", key.Short())
}

// Key returns the key the object will have.
func (w *Writer) Key() Key { return w.key }

// Dir returns the folder where the step writes the object's files. Only regular files directly in it
// become part of the object. Relative paths from it to other objects' files stay valid after Commit.
func (w *Writer) Dir() string { return filepath.Join(w.tmp, dataName) }

// FinalPath returns where the file name will be once the object is committed. A layer written before its
// parent is committed names its backing file this way (relative to [Writer.Dir]).
func (w *Writer) FinalPath(name string) string {
	return filepath.Join(w.s.objectDir(w.key), dataName, name)
}

// Path returns the path in [Writer.Dir] of the file name, or an error when name cannot name an object file.
func (w *Writer) Path(name string) (string, error) {
	if err := validFileName(name); err != nil {
		return "", err
	}
	return filepath.Join(w.Dir(), name), nil
}

// WriteFile writes a small file of the object, such as an SSH key (perm 0o600) or user-data.
func (w *Writer) WriteFile(name string, data []byte, perm os.FileMode) error {
	path, err := w.Path(name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

// Commit hashes and fsyncs the files, makes them read-only, writes the metadata and renames the folder into
// place, then fsyncs the parent folder. When another writer committed the key first, Commit discards this
// writer's files and returns the existing object. After Commit, successful or not, the writer is finished.
func (w *Writer) Commit() (obj *Object, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil, fmt.Errorf("commit %s: writer already finished", w.key.Short())
	}
	w.done = true
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("commit %s: %w", w.key.Short(), err), w.cleanup())
			obj = nil
		}
	}()

	if w.parentW != nil {
		sum, err := w.parentW.committed()
		if err != nil {
			return nil, fmt.Errorf("parent %s: %w", w.info.Parent.Short(), err)
		}
		w.parentSum = sum
	}
	if !w.info.Parent.IsZero() {
		parent, err := w.s.load(w.info.Parent)
		if err != nil {
			return nil, fmt.Errorf("parent %s: %w", w.info.Parent.Short(), err)
		}
		if parent.SHA256 != w.parentSum {
			return nil, fmt.Errorf("parent %s was replaced while this object was written", w.info.Parent.Short())
		}
	}
	files, err := sealFiles(w.Dir())
	if err != nil {
		return nil, err
	}
	now := w.s.now()
	m := Meta{
		FormatVersion: metaFormatVersion,
		Key:           w.key,
		Info:          w.info,
		SHA256:        ObjectDigest(files),
		ParentSHA256:  w.parentSum,
		Files:         files,
		Created:       now,
		LastUsed:      now,
	}
	for _, f := range files {
		m.Size += f.Size
	}
	return w.publish(&m)
}

// committed returns the digest of the files this writer committed.
func (w *Writer) committed() (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.shared:
		return "", errors.New("another writer committed it first, so the object differs from the one this was built on")
	case w.sum == "":
		return "", errors.New("not committed before its child")
	}
	return w.sum, nil
}

// Abort removes the temp folder and its files. It is a no-op after Commit, so it can be deferred.
func (w *Writer) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	return w.cleanup()
}

func (w *Writer) cleanup() error {
	return errors.Join(os.RemoveAll(w.tmp), w.lock.Close())
}

// sealFiles hashes, fsyncs and write-protects every file in dir and returns their sums sorted by name.
func sealFiles(dir string) ([]FileSum, error) {
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return nil, err
	}
	files := make([]FileSum, 0, len(entries))
	for _, e := range entries {
		if err := validFileName(e.Name()); err != nil {
			return nil, err
		}
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file; objects hold plain files only", e.Name())
		}
		sum, err := sealFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files = append(files, sum)
	}
	return files, nil
}

func sealFile(path string) (FileSum, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileSum{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err == nil {
		err = fsutil.SyncFile(f)
	}
	if err == nil {
		// Committed files never change; write-protecting them catches tools that try.
		var st os.FileInfo
		if st, err = f.Stat(); err == nil {
			err = f.Chmod(st.Mode().Perm() &^ 0o222)
		}
	}
	if err = errors.Join(err, f.Close()); err != nil {
		return FileSum{}, err
	}
	return FileSum{Name: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// writeSynced writes a new file and fsyncs it. It is for files inside a temp folder, which the folder's
// rename publishes atomically; elsewhere use fsutil.WriteFileAtomic.
func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = fsutil.SyncFile(f)
	}
	return errors.Join(err, f.Close())
}

// discard removes the object folder of key, first renaming it to a hidden name so that no reader ever
// sees a half-removed object, and gc finishes the job if this process dies during the removal.
func (s *Store) discard(key Key) error {
	trash := filepath.Join(s.shardDir(key), delPrefix+key.String()+"-"+rand.Text())
	if err := os.Rename(s.objectDir(key), trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // someone else removed it
		}
		return err
	}
	if err := fsutil.SyncDir(s.shardDir(key)); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

// Discard removes the object of key, if any, such as a result that no longer holds (a test report whose
// layer was built again). Readers that opened its files keep them; the key is free for a new commit.
func (s *Store) Discard(key Key) error { return s.discard(key) }

package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// ErrFormatVersion is wrapped by [Meta.Validate] and [Store.Import] when metadata comes from an imgform that
// writes another metadata format. It is not damage: treat such an object as missing.
var ErrFormatVersion = errors.New("metadata format of another imgform version")

// ErrParentMismatch is wrapped by [Store.Import] when the object's parent is not in the store with the content
// the object was built on: import the parent first, or build the object locally.
var ErrParentMismatch = errors.New("parent is not in the store with the content the object was built on")

// Validate checks metadata that comes from elsewhere (another store, a registry) before it is trusted:
// its format version, that it belongs to key, valid file names and sizes, and that SHA256 covers Files. It
// reads no file. Its error wraps [ErrFormatVersion] for another format and [ErrCorrupt] otherwise.
func (m *Meta) Validate(key Key) error {
	if m.FormatVersion != metaFormatVersion {
		return fmt.Errorf("format_version %d, this imgform reads %d: %w", m.FormatVersion, metaFormatVersion,
			ErrFormatVersion)
	}
	if key.IsZero() {
		return errors.New("zero key")
	}
	if err := m.check(key); err != nil {
		return fmt.Errorf("metadata of %s: %w: %w", key.Short(), err, ErrCorrupt)
	}
	return nil
}

// Import commits under key an object made elsewhere, typically in another machine's store and carried here
// by a registry. meta is that object's metadata (Created is kept); fill writes the object's files into the
// folder it is given, a private temp folder of the store. Import then hashes every file and commits only
// when the files are exactly meta.Files (no file missing or extra, each of its size and sha256); otherwise
// it throws the files away and returns an error wrapping [ErrCorrupt]. An error of fill is returned as it
// is, after the files are thrown away.
//
// A layer's files can name its parent's files by relative paths (qcow2 backing files), which work here as
// they did in the other store because the layout is the same. The parent must therefore be in this store
// with the content the object was built on (meta.ParentSHA256); otherwise the error wraps
// [ErrParentMismatch] and fill is not called.
//
// When the key is in the store already, Import returns that object without calling fill. Imports and local
// builds of one key may run at once: the first commit wins and the others return its object, as with
// [Writer.Commit]. Take [Store.LockKey] first to avoid transferring the same files twice.
func (s *Store) Import(key Key, meta Meta, fill func(dir string) error) (*Object, error) {
	if err := meta.Validate(key); err != nil {
		return nil, fmt.Errorf("import %s: %w", key.Short(), err)
	}
	if obj, err := s.load(key); err == nil {
		s.logf("state: %s: import: in the store already", key.Short())
		return obj, nil
	}
	if !meta.Parent.IsZero() {
		parent, err := s.load(meta.Parent)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("import %s: parent %s is not in the store: %w", key.Short(), meta.Parent.Short(),
				ErrParentMismatch)
		}
		if err != nil {
			return nil, fmt.Errorf("import %s: parent %s: %w: %w", key.Short(), meta.Parent.Short(), err, ErrParentMismatch)
		}
		if parent.SHA256 != meta.ParentSHA256 {
			return nil, fmt.Errorf("import %s: parent %s has sha256 %s here, the object was built on %s: %w",
				key.Short(), meta.Parent.Short(), parent.SHA256, meta.ParentSHA256, ErrParentMismatch)
		}
	}
	w, err := s.begin(key, meta.Info, nil)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", key.Short(), err)
	}
	// begin remembered the parent as it is now; it must still be the one the object was built on.
	if w.parentSum != meta.ParentSHA256 {
		return nil, errors.Join(fmt.Errorf("import %s: parent %s changed meanwhile: %w", key.Short(),
			meta.Parent.Short(), ErrParentMismatch), w.Abort())
	}
	if err := fill(w.Dir()); err != nil {
		return nil, errors.Join(fmt.Errorf("import %s: %w", key.Short(), err), w.Abort())
	}
	return w.commitImport(&meta)
}

// commitImport is [Writer.Commit] for an imported object: the files must match want, and want's metadata
// (with its Created) is what gets written.
func (w *Writer) commitImport(want *Meta) (obj *Object, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil, fmt.Errorf("import %s: writer already finished", w.key.Short())
	}
	w.done = true
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("import %s: %w", w.key.Short(), err), w.cleanup())
			obj = nil
		}
	}()

	if !w.info.Parent.IsZero() {
		parent, err := w.s.load(w.info.Parent)
		if err != nil {
			return nil, fmt.Errorf("parent %s: %w: %w", w.info.Parent.Short(), err, ErrParentMismatch)
		}
		if parent.SHA256 != w.parentSum {
			return nil, fmt.Errorf("parent %s was replaced while this object was imported: %w",
				w.info.Parent.Short(), ErrParentMismatch)
		}
	}
	// sealFiles is the one pass that hashes what fill wrote; it also rejects anything but regular files.
	files, err := sealFiles(w.Dir())
	if err != nil {
		return nil, err
	}
	if err := sameFiles(files, want.Files); err != nil {
		return nil, err
	}
	now := w.s.now()
	m := *want
	m.Attrs = maps.Clone(want.Attrs)
	m.LastUsed = now
	return w.publish(&m)
}

// sameFiles compares the files found in an import's temp folder with those its metadata lists, both sorted
// by name, and describes every difference.
func sameFiles(got, want []FileSum) error {
	var diffs []string
	i, j := 0, 0
	for i < len(got) || j < len(want) {
		switch {
		case j == len(want) || (i < len(got) && got[i].Name < want[j].Name):
			diffs = append(diffs, fmt.Sprintf("extra file %q", got[i].Name))
			i++
		case i == len(got) || want[j].Name < got[i].Name:
			diffs = append(diffs, fmt.Sprintf("missing file %q", want[j].Name))
			j++
		default:
			if got[i] != want[j] {
				diffs = append(diffs, fmt.Sprintf("file %q has %d bytes with sha256 %s, want %d bytes with sha256 %s",
					got[i].Name, got[i].Size, got[i].SHA256, want[j].Size, want[j].SHA256))
			}
			i++
			j++
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%s: %w", strings.Join(diffs, "; "), ErrCorrupt)
	}
	return nil
}

// publish writes m as the metadata of the sealed files in the temp folder, renames the folder into place and
// fsyncs the folder above; when another writer committed the key first, it returns that object instead
// (ours is as good, same key, unless that one is damaged or built on a parent replaced since: then ours
// replaces it). [Writer.Commit] and imports end here. The caller holds w.mu and turns an error into cleanup.
func (w *Writer) publish(m *Meta) (*Object, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	metaPath := filepath.Join(w.tmp, metaName)
	if err := writeSynced(metaPath, append(b, '\n')); err != nil {
		return nil, err
	}
	if err := os.Chtimes(metaPath, m.LastUsed, m.LastUsed); err != nil {
		return nil, err
	}
	if err := errors.Join(fsutil.SyncDir(w.Dir()), fsutil.SyncDir(w.tmp)); err != nil {
		return nil, err
	}

	final := w.s.objectDir(w.key)
	err = os.Rename(w.tmp, final)
	if errors.Is(err, fs.ErrExist) {
		// A local build or another import won; its object is as good as ours unless it is damaged.
		if existing, lerr := w.s.load(w.key); lerr == nil {
			w.s.logf("state: %s: committed concurrently by another writer; sharing it", w.key.Short())
			w.shared = true
			if err := w.cleanup(); err != nil {
				w.s.logf("state: %s: remove redundant temp folder: %v", w.key.Short(), err)
			}
			return existing, nil
		}
		if err := w.s.discard(w.key); err != nil {
			return nil, err
		}
		err = os.Rename(w.tmp, final)
	}
	if err != nil {
		return nil, err
	}
	if err := fsutil.SyncDir(filepath.Dir(final)); err != nil {
		return nil, err
	}
	if err := w.lock.Close(); err != nil {
		w.s.logf("state: %s: release temp folder lock: %v", w.key.Short(), err)
	}
	w.sum = m.SHA256
	return &Object{Meta: *m, dir: final}, nil
}

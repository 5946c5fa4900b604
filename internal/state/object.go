package state

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxChain bounds how many parents a lookup follows, so that metadata damaged into a cycle cannot hang it.
const maxChain = 1000

// ErrCorrupt is wrapped by every error that reports content not matching its recorded size or sha256.
var ErrCorrupt = errors.New("content does not match its checksum")

// Object is a committed object: its metadata and where its files are. Its files are read-only; build on an
// object (a qcow2 overlay, a copy) instead of changing it.
type Object struct {
	Meta
	dir string // the object folder; files live in dir/data
}

// Dir returns the folder holding the object's files.
func (o *Object) Dir() string { return filepath.Join(o.dir, dataName) }

// Path returns the absolute path of the object's file name. It does not check that the object has such a
// file; see [Meta.File].
func (o *Object) Path(name string) string { return filepath.Join(o.dir, dataName, name) }

// Open opens the object's file name for reading through a reader that hashes what it reads and, at the
// end, fails with an error wrapping [ErrCorrupt] instead of io.EOF when the content does not match the
// metadata. Bytes returned before the end are not yet verified: copy them somewhere provisional (such as an
// fsutil.AtomicFile) and publish only when reading ended with io.EOF.
func (o *Object) Open(name string) (*VerifyingReader, error) {
	sum, ok := o.File(name)
	if !ok {
		return nil, fmt.Errorf("object %s has no file %q", o.Key.Short(), name)
	}
	f, err := os.Open(o.Path(name))
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", o.Key.Short(), err)
	}
	return &VerifyingReader{f: f, h: sha256.New(), want: sum, key: o.Key}, nil
}

// VerifyingReader reads a file of an object and checks its size and sha256 at the end. See [Object.Open].
type VerifyingReader struct {
	f    *os.File
	h    hash.Hash
	n    int64
	want FileSum
	key  Key
	err  error // sticky result once the end was reached or the content overran
}

// Read reads from the file. At the end it returns io.EOF only when the content matched; otherwise an error
// wrapping [ErrCorrupt]. It also fails as soon as the file grows past its recorded size.
func (r *VerifyingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.f.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if r.n > r.want.Size {
		r.err = r.corrupt(fmt.Sprintf("longer than %d bytes", r.want.Size))
		return n, r.err
	}
	if errors.Is(err, io.EOF) {
		switch got := hex.EncodeToString(r.h.Sum(nil)); {
		case r.n != r.want.Size:
			r.err = r.corrupt(fmt.Sprintf("%d bytes, want %d", r.n, r.want.Size))
		case got != r.want.SHA256:
			r.err = r.corrupt(fmt.Sprintf("sha256 %s, want %s", got, r.want.SHA256))
		default:
			r.err = io.EOF
		}
		return n, r.err
	}
	return n, err
}

func (r *VerifyingReader) corrupt(what string) error {
	return fmt.Errorf("object %s file %q: %s: %w", r.key.Short(), r.want.Name, what, ErrCorrupt)
}

// Close closes the file.
func (r *VerifyingReader) Close() error { return r.f.Close() }

// Lookup returns the object stored under key. A missing, half-written or damaged object (unreadable
// metadata, a missing file, a file of the wrong size, a parent layer that is missing or was rebuilt since)
// is a miss, never an error: the caller rebuilds it. The reason of a miss goes to [Store.Logf]. The error
// is for misuse (a zero key) only.
//
// Lookup checks sizes, not hashes; use [Store.Verify] or [Object.Open] for that. It does not count as a
// use: call [Store.Touch] when the object is actually used, and take a [Store.Hold] first so gc cannot
// remove the object between the lookup and its use.
func (s *Store) Lookup(key Key) (*Object, bool, error) {
	if key.IsZero() {
		return nil, false, errors.New("lookup: zero key")
	}
	obj, err := s.load(key)
	if err != nil {
		if _, statErr := os.Lstat(s.objectDir(key)); errors.Is(statErr, fs.ErrNotExist) {
			s.logf("state: %s: miss: not in the store", key.Short())
		} else {
			s.logf("state: %s: miss, ignoring damaged object: %v", key.Short(), err)
		}
		return nil, false, nil
	}
	return obj, true, nil
}

// load reads the object and checks it and its chain of parents cheaply.
func (s *Store) load(key Key) (*Object, error) {
	obj, err := s.loadOne(key)
	if err != nil {
		return nil, err
	}
	seen := map[Key]bool{key: true}
	for child := &obj.Meta; !child.Parent.IsZero(); {
		p := child.Parent
		if seen[p] || len(seen) > maxChain {
			return nil, fmt.Errorf("parent chain loops or is longer than %d", maxChain)
		}
		seen[p] = true
		parent, err := s.loadOne(p)
		if err != nil {
			return nil, fmt.Errorf("parent %s: %w", p.Short(), err)
		}
		if parent.SHA256 != child.ParentSHA256 {
			return nil, fmt.Errorf("parent %s was rebuilt after %s was built on it", p.Short(), child.Key.Short())
		}
		child = &parent.Meta
	}
	return obj, nil
}

func (s *Store) loadOne(key Key) (*Object, error) {
	dir := s.objectDir(key)
	m, err := readMeta(dir, key)
	if err != nil {
		return nil, err
	}
	if err := checkFiles(filepath.Join(dir, dataName), m); err != nil {
		return nil, err
	}
	return &Object{Meta: *m, dir: dir}, nil
}

// Touch records that the object under key was used now, which keeps it from age- and size-based gc.
func (s *Store) Touch(key Key) error {
	now := s.now()
	if err := os.Chtimes(filepath.Join(s.objectDir(key), metaName), now, now); err != nil {
		return fmt.Errorf("touch %s: %w", key.Short(), err)
	}
	return nil
}

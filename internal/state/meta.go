package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// metaFormatVersion is the format_version of meta.json files this build writes and reads.
const metaFormatVersion = 1

// Limits on what callers put in [Info]: metadata is read on every lookup and must stay small.
const (
	maxAttrsBytes = 16 << 10
	maxNameLen    = 255
)

// Info is what the producer of an object tells the store about it. The store adds the rest of [Meta].
type Info struct {
	// Kind is the step kind that made the object, such as "fetch", "seed", "disk" or "export". Required.
	Kind string `json:"kind"`
	// Image and Step name the image and step that first made the object, for humans (cache ls); the same
	// key made by another image is the same object.
	Image string `json:"image,omitempty"`
	Step  string `json:"step,omitempty"`
	// Parent is the key of the object whose files this one's files depend on, such as the backing layer
	// of a qcow2 overlay. Set it only for such a dependency: it ties the two lifetimes together. A lookup
	// misses when the parent is gone or was rebuilt with other content since, and gc never removes a
	// parent before its children.
	Parent Key `json:"parent,omitzero"`
	// Attrs holds small extra attributes (at most 16 KiB in all), such as a disk format or a virtual size.
	// Never put secret values here.
	Attrs map[string]string `json:"attrs,omitempty"`
}

func (in Info) validate() error {
	if in.Kind == "" {
		return errors.New("object kind is empty")
	}
	n := 0
	for k, v := range in.Attrs {
		if k == "" {
			return errors.New("object attribute with an empty name")
		}
		n += len(k) + len(v)
	}
	if n > maxAttrsBytes {
		return fmt.Errorf("object attributes take %d bytes, more than %d", n, maxAttrsBytes)
	}
	return nil
}

// FileSum describes one file of an object.
type FileSum struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
}

// Meta is the metadata record of a committed object, stored as meta.json next to its files.
type Meta struct {
	FormatVersion int `json:"format_version"`
	Key           Key `json:"key"`
	Info
	// Size is the total size of the files in bytes.
	Size int64 `json:"size"`
	// SHA256 covers every file: see [ObjectDigest].
	SHA256 string `json:"sha256"`
	// ParentSHA256 is the SHA256 of the parent when this object was begun. Builds are not reproducible,
	// so a parent rebuilt under the same key has other bytes, and an overlay over it would be garbage.
	ParentSHA256 string `json:"parent_sha256,omitempty"`
	// Files lists the files by name, sorted.
	Files   []FileSum `json:"files"`
	Created time.Time `json:"created"`
	// LastUsed is when the object was last committed or touched. It is the modification time of meta.json,
	// not a field in it, as in Go's build cache: touching then needs no rewrite that a crash could tear.
	LastUsed time.Time `json:"-"`
}

// File returns the sum of the named file.
func (m *Meta) File(name string) (FileSum, bool) {
	i := sort.Search(len(m.Files), func(i int) bool { return m.Files[i].Name >= name })
	if i < len(m.Files) && m.Files[i].Name == name {
		return m.Files[i], true
	}
	return FileSum{}, false
}

// ObjectDigest returns the digest that covers all files of an object: the hex sha256 of one line per file,
// sorted by name, of the form "<sha256 hex> <size> <name>\n". Names cannot hold a newline, so the lines
// cannot be forged by a file name.
func ObjectDigest(files []FileSum) string {
	sorted := append([]FileSum(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	h := sha256.New()
	for _, f := range sorted {
		fmt.Fprintf(h, "%s %d %s\n", f.SHA256, f.Size, f.Name)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// validFileName reports whether name can name a file of an object: one path element, printable enough to
// sit in a digest line.
func validFileName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("invalid object file name %q", name)
	case len(name) > maxNameLen:
		return fmt.Errorf("object file name %q... is longer than %d bytes", name[:32], maxNameLen)
	case strings.ContainsAny(name, "/\\\x00\n\r"):
		return fmt.Errorf("object file name %q holds a path separator or control character", name)
	}
	return nil
}

// check verifies that m is consistent in itself and belongs to key. It reads no file contents.
func (m *Meta) check(key Key) error {
	if m.FormatVersion != metaFormatVersion {
		return fmt.Errorf("format_version %d, want %d", m.FormatVersion, metaFormatVersion)
	}
	if m.Key != key {
		return fmt.Errorf("metadata is for key %s", m.Key.Short())
	}
	if err := m.Info.validate(); err != nil {
		return err
	}
	var total int64
	for i, f := range m.Files {
		if err := validFileName(f.Name); err != nil {
			return err
		}
		if i > 0 && m.Files[i-1].Name >= f.Name {
			return errors.New("file list is not sorted or has duplicates")
		}
		if f.Size < 0 || f.Size > math.MaxInt64-total || !validDigest(f.SHA256) {
			return fmt.Errorf("file %q: bad size or sha256", f.Name)
		}
		total += f.Size
	}
	if total != m.Size {
		return fmt.Errorf("size %d does not match its files (%d)", m.Size, total)
	}
	if ObjectDigest(m.Files) != m.SHA256 {
		return errors.New("sha256 does not match its files")
	}
	if m.Parent.IsZero() != (m.ParentSHA256 == "") {
		return errors.New("parent and parent_sha256 disagree")
	}
	if m.ParentSHA256 != "" && !validDigest(m.ParentSHA256) {
		return errors.New("parent_sha256 is not a sha256")
	}
	return nil
}

// validDigest reports whether s is a sha256 as the store writes it: 64 lowercase hex digits.
func validDigest(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// readMeta reads and checks the metadata of the object folder dir.
// maxMetaSize bounds what readMeta reads: far above any real metadata (a few files of one step).
const maxMetaSize = 1 << 20

func readMeta(dir string, key Key) (*Meta, error) {
	path := filepath.Join(dir, metaName)
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	// A metadata file is a few hundred bytes; a huge one is damage or a plant, not something to read whole.
	if st.Size() > maxMetaSize {
		return nil, fmt.Errorf("metadata unreadable: %d bytes, more than the %d a metadata file can have", st.Size(), maxMetaSize)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("metadata unreadable: %w", clippedError{err})
	}
	if err := m.check(key); err != nil {
		return nil, fmt.Errorf("metadata inconsistent: %w", err)
	}
	m.LastUsed = st.ModTime()
	return &m, nil
}

// clippedError keeps a decoding error for errors.Is and errors.As but shortens its message: encoding/json
// quotes whole values (a number of a million digits, a key of any length), and a damaged meta.json must
// not paste itself into warnings and cache verify's report.
type clippedError struct{ err error }

func (e clippedError) Error() string {
	const max = 200
	msg := e.err.Error()
	if len(msg) <= max {
		return msg
	}
	n := max
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n] + "..."
}

func (e clippedError) Unwrap() error { return e.err }

// checkFiles is the cheap content check done on every lookup: each file exists, is a regular file and has
// its recorded size. Re-hashing is left to Verify because objects are many GB.
func checkFiles(dataDir string, m *Meta) error {
	for _, f := range m.Files {
		st, err := os.Lstat(filepath.Join(dataDir, f.Name))
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("file %q is not a regular file", f.Name)
		}
		if st.Size() != f.Size {
			return fmt.Errorf("file %q has %d bytes, want %d", f.Name, st.Size(), f.Size)
		}
	}
	return nil
}

package qemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// A qcow2 image can name other files that QEMU then opens: a backing file (any path, or a protocol such as
// json:, nbd: or http:) and an external data file. A source image from a mirror must do neither, or a
// build would read a file of the build host into the image. imgform reads the few header fields that say
// so itself, so that no qemu tool opens anything the image names before it is checked.

// qcow2Magic starts every qcow2 image: "QFI\xfb".
const qcow2Magic = 0x514649fb

// qcow2IncompatDataFile is the incompatible feature bit of an external data file.
const qcow2IncompatDataFile = 1 << 2

// qcow2Header is the part of a qcow2 header imgform checks (big-endian fields, see qemu's
// docs/interop/qcow2.txt).
type qcow2Header struct {
	Version       uint32
	BackingOffset uint64
	BackingSize   uint32
	Incompatible  uint64 // version 3 only
	HeaderLength  uint32 // version 3 only; 72 for version 2
}

// qcow2ExtBackingFormat is the header extension that holds the backing file's format.
const qcow2ExtBackingFormat = 0xe2792aca

// readQcow2Header reads the header of a qcow2 image; ok is false when f is not one.
func readQcow2Header(f io.ReaderAt) (h qcow2Header, ok bool, err error) {
	var b [104]byte
	n, err := f.ReadAt(b[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return h, false, err
	}
	if n < 4 || binary.BigEndian.Uint32(b[0:4]) != qcow2Magic {
		return h, false, nil
	}
	if n < 72 {
		return h, true, errors.New("the qcow2 header is cut short")
	}
	h.Version = binary.BigEndian.Uint32(b[4:8])
	h.BackingOffset = binary.BigEndian.Uint64(b[8:16])
	h.BackingSize = binary.BigEndian.Uint32(b[16:20])
	if h.Version >= 3 {
		if n < 80 {
			return h, true, errors.New("the qcow2 version 3 header is cut short")
		}
		h.Incompatible = binary.BigEndian.Uint64(b[72:80])
		if n >= 104 {
			h.HeaderLength = binary.BigEndian.Uint32(b[100:104])
		}
	}
	return h, true, nil
}

// backingFormat reads the backing file's format from the header extensions ("" when none is written:
// QEMU then guesses it from the backing file's content).
func (h qcow2Header) backingFormat(f io.ReaderAt) (string, error) {
	off := int64(72)
	if h.Version >= 3 {
		if h.HeaderLength < 104 || h.HeaderLength > 4096 {
			return "", fmt.Errorf("the qcow2 header length %d is not valid", h.HeaderLength)
		}
		off = int64(h.HeaderLength)
	}
	// Extensions end with type 0, and before the first cluster (at least 512 bytes into the file).
	for i := 0; i < 64; i++ {
		var e [8]byte
		if _, err := f.ReadAt(e[:], off); err != nil {
			return "", fmt.Errorf("reading the qcow2 header extensions: %w", err)
		}
		typ, length := binary.BigEndian.Uint32(e[0:4]), binary.BigEndian.Uint32(e[4:8])
		if typ == 0 {
			return "", nil
		}
		if length > 65536 {
			return "", fmt.Errorf("a qcow2 header extension of %d bytes", length)
		}
		if typ == qcow2ExtBackingFormat {
			b := make([]byte, length)
			if _, err := f.ReadAt(b, off+8); err != nil {
				return "", fmt.Errorf("reading the backing format: %w", err)
			}
			return string(b), nil
		}
		off += 8 + (int64(length)+7)/8*8
	}
	return "", errors.New("too many qcow2 header extensions")
}

// backingName reads the backing file's name as written in the header ("" when there is none).
func (h qcow2Header) backingName(f io.ReaderAt) (string, error) {
	if h.BackingOffset == 0 {
		return "", nil
	}
	if h.BackingSize == 0 || h.BackingSize > 1023 {
		return "", fmt.Errorf("the qcow2 header names a backing file of %d bytes", h.BackingSize)
	}
	b := make([]byte, h.BackingSize)
	if _, err := f.ReadAt(b, int64(h.BackingOffset)); err != nil {
		return "", fmt.Errorf("reading the backing file's name: %w", err)
	}
	return string(b), nil
}

// ProbeFormat says what a disk image file is from its first bytes: "qcow2" for the qcow2 magic, "raw" for
// anything else (raw never names another file). Callers then give qemu the format explicitly, so that it
// never guesses.
func ProbeFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	_, ok, err := readQcow2Header(f)
	if err != nil && !ok {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if ok {
		return "qcow2", nil
	}
	return "raw", nil
}

// CheckStandalone returns an error when the image at path, read as format, names another file: a backing
// file or an external data file.
func CheckStandalone(path, format string) error {
	if format != "qcow2" {
		return nil
	}
	named, err := namedFiles(path)
	switch {
	case err != nil:
		return err
	case !named.qcow2:
		return fmt.Errorf("%s is not a qcow2 image", path)
	case named.dataFile:
		return errors.New("the qcow2 image keeps its data in an external data file: QEMU would read that file of this host; use a standalone image (qemu-img convert -O qcow2 in.qcow2 out.qcow2)")
	case named.backing != "":
		return fmt.Errorf("the qcow2 image names a backing file (%q): QEMU would read that file of this host into the image; use a standalone image (qemu-img convert -O qcow2 in.qcow2 out.qcow2)", named.backing)
	}
	return nil
}

// named is what an image's header says about other files: whether it is qcow2 at all, its backing file as
// written ("" for none) and whether it has an external data file.
type named struct {
	qcow2         bool
	backing       string
	backingFormat string // as written in the header; "" when QEMU would guess it
	dataFile      bool
}

// namedFiles reads the header of the image at path (a raw file names nothing).
func namedFiles(path string) (named, error) {
	f, err := os.Open(path)
	if err != nil {
		return named{}, err
	}
	defer func() { _ = f.Close() }()
	h, ok, err := readQcow2Header(f)
	if err != nil {
		return named{}, fmt.Errorf("%s: %w", path, err)
	}
	if !ok {
		return named{}, nil
	}
	n := named{qcow2: true, dataFile: h.Incompatible&qcow2IncompatDataFile != 0}
	if n.dataFile {
		return n, nil // the data file's name is in an extension; having one at all is refused
	}
	if n.backing, err = h.backingName(f); err != nil || n.backing == "" {
		return n, err
	}
	n.backingFormat, err = h.backingFormat(f)
	return n, err
}

// CheckChainWithin checks the chain of qcow2 layers that starts at path before QEMU or qemu-img opens it:
// every backing file is a plain path (no json:, nbd: or other protocol) that resolves to a file below root,
// no layer has an external data file, and the bottom of the chain is a raw file or a standalone qcow2
// image. Layers the store holds name their backing files by relative paths inside it; anything else means a
// damaged or planted file.
//
// Symbolic links are followed before the check, so a link inside the store cannot lead out of it. Each
// backing file's format must be written as qcow2 or raw (the only formats of layers and sources), or be
// left out over a qcow2 file: QEMU guesses a format that is not written, and a file of the store read as
// vmdk, say, could name files of the host again.
func CheckChainWithin(path, root string) error {
	root, err := filepath.Abs(root)
	if err != nil {
		return err
	}
	if resolved, err := filepath.EvalSymlinks(root); err == nil {
		root = resolved
	}
	for depth := 0; ; depth++ {
		if depth > 1000 {
			return fmt.Errorf("%s: the backing chain is more than 1000 layers deep", path)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		inside := func(p string) bool { return strings.HasPrefix(p, root+string(filepath.Separator)) }
		if !inside(abs) {
			return fmt.Errorf("%s is outside the cache (%s): a layer chain must live in the cache", abs, root)
		}
		if resolved, err := filepath.EvalSymlinks(abs); err == nil && !inside(resolved) {
			return fmt.Errorf("%s leads to %s, outside the cache (%s): a layer chain must live in the cache", abs, resolved, root)
		}
		next, err := backingOf(abs)
		if err != nil || next == "" {
			return err
		}
		path = next
	}
}

// backingOf returns the path of the backing file of the image at path, resolved against its folder, or ""
// when the image has none (a raw file or a standalone qcow2 image).
func backingOf(path string) (string, error) {
	n, err := namedFiles(path)
	switch {
	case err != nil:
		return "", err
	case n.dataFile:
		return "", fmt.Errorf("%s keeps its data in an external data file", path)
	case n.backing == "":
		return "", nil // raw, or a standalone qcow2 image
	}
	name := n.backing
	if i := strings.IndexAny(name, ":/"); i >= 0 && name[i] == ':' {
		return "", fmt.Errorf("%s names a backing file through a protocol (%q)", path, name)
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(path), name)
	}
	name = filepath.Clean(name)
	switch n.backingFormat {
	case "qcow2", "raw":
	case "":
		if format, err := ProbeFormat(name); err != nil || format != "qcow2" {
			return "", fmt.Errorf("%s names its backing file %s without a format, and that file is not qcow2: QEMU would guess its format", path, name)
		}
	default:
		return "", fmt.Errorf("%s reads its backing file as %q: layers and sources in the cache are qcow2 or raw", path, n.backingFormat)
	}
	return name, nil
}

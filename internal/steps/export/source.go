package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

// sourceInfo is what qemu-img tells about the source and its backing chain.
type sourceInfo struct {
	Format      string // format of the top layer, passed to convert with -f so it is never probed again
	VirtualSize int64  // size of the disk the guest sees
	Allocated   int64  // bytes the chain occupies on the host, an upper bound for the flattened data
	Layers      int    // 1 for a plain image
}

// qemuImgInfo is the part of one element of "qemu-img info --output=json --backing-chain" we read.
type qemuImgInfo struct {
	Filename       string `json:"filename"`
	Format         string `json:"format"`
	VirtualSize    int64  `json:"virtual-size"`
	ActualSize     int64  `json:"actual-size"`
	FormatSpecific struct {
		Data struct {
			Corrupt bool `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

// sectorSize is the unit every real raw disk image is a multiple of.
const sectorSize = 512

// compressedMagic lists the signatures of compressed files people pass by mistake (a downloaded
// ".qcow2.zst" or ".raw.xz"): qemu-img would read them as a raw disk full of noise.
var compressedMagic = []struct {
	name  string
	magic []byte
}{
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{"gzip", []byte{0x1f, 0x8b, 0x08}},
}

// inspect asks qemu-img about the source and rejects what is not a disk image.
//
// It reads with -U (force-share): info only reads metadata, and running it while QEMU still holds the
// image is harmless; the convert that follows does take the lock (see flatten), so an image that is
// still being written is never copied.
//
// The format is given (-f), read from the file's magic, so that qemu-img never guesses one from content;
// the layers below come with their formats written (qemu.CheckChainWithin checked them before).
func inspect(ctx context.Context, env *env, src string) (sourceInfo, error) {
	if fi, err := os.Stat(src); err == nil && !fi.Mode().IsRegular() {
		return sourceInfo{}, fmt.Errorf("source %s is not a readable disk image: it is not a regular file", src)
	}
	format, err := qemu.ProbeFormat(src)
	if err != nil {
		return sourceInfo{}, fmt.Errorf("source %s is not a readable disk image: %w", src, err)
	}
	var out bytes.Buffer
	err = qemuImg(ctx, env, &out, "info", "-f", format, "--output=json", "--backing-chain", "-U", src)
	if err != nil {
		return sourceInfo{}, fmt.Errorf("source %s is not a readable disk image: %w", src, err)
	}
	var chain []qemuImgInfo
	if err := json.Unmarshal(out.Bytes(), &chain); err != nil {
		return sourceInfo{}, fmt.Errorf("source %s: cannot read the output of qemu-img info: %w", src, err)
	}
	if len(chain) == 0 {
		return sourceInfo{}, fmt.Errorf("source %s: qemu-img info listed no image", src)
	}
	top := chain[0]
	info := sourceInfo{Format: top.Format, VirtualSize: top.VirtualSize, Layers: len(chain)}
	for _, l := range chain {
		if l.FormatSpecific.Data.Corrupt {
			return sourceInfo{}, fmt.Errorf("source %s: layer %s is marked corrupt by qemu; run qemu-img check -r on it", src, l.Filename)
		}
		info.Allocated += l.ActualSize
	}
	if top.Format == "raw" {
		// qemu-img calls any file raw, and rounds its size up to a sector; a text file or an archive
		// would be exported as a "disk" of garbage. A real raw image is whole sectors and does not start
		// with a compressor's signature.
		if err := checkRaw(src); err != nil {
			return sourceInfo{}, err
		}
	}
	if info.VirtualSize <= 0 {
		return sourceInfo{}, fmt.Errorf("source %s is not a disk image: its virtual size is 0", src)
	}
	return info, nil
}

func checkRaw(src string) (err error) {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("source %s: %w", src, err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("source %s: %w", src, err)
	}
	if st.Size() == 0 {
		return fmt.Errorf("source %s is not a disk image: the file is empty", src)
	}
	if st.Size()%sectorSize != 0 {
		return fmt.Errorf("source %s is not a disk image: qemu-img reads it as raw data of %d bytes, not a whole number of %d-byte sectors",
			src, st.Size(), sectorSize)
	}
	head := make([]byte, 8)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("source %s: %w", src, err)
	}
	for _, m := range compressedMagic {
		if bytes.HasPrefix(head[:n], m.magic) {
			return fmt.Errorf("source %s is not a disk image: it is %s-compressed; decompress it first", src, m.name)
		}
	}
	return nil
}

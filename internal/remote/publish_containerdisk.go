package remote

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A KubeVirt containerDisk is an ordinary container image that holds one disk file. What KubeVirt and CDI
// expect of it, and how this package meets it:
//
//   - "The disk must be placed into the /disk directory of the container and must be readable for the
//     user with the UID 107 (qemu). The format of the VMI disk must be raw or qcow2. [...] no other content
//     except the image is required." (KubeVirt user guide, Disks and Volumes, containerDisk; its example
//     is "FROM scratch / ADD --chown=107:107 fedora25.qcow2 /disk/", as in kubevirt/kubevirt
//     docs/container-register-disks.md.) The image has one layer: disk/ and disk/<name>, owned by
//     107:107, the file mode 0440 (KubeVirt only reads it: a VM writes to an overlay of its own).
//   - CDI imports "the same container images as containerDisk": "the VM disk image file [...] must be
//     located under /disk directory [...] There are no special naming constraints" (CDI
//     doc/image-from-registry.md). The file keeps the output's name.
//   - Nodes pull it with their container runtime, so it is an OCI image proper, not an artifact: config
//     application/vnd.oci.image.config.v1+json with os and architecture and rootfs.diff_ids, a
//     tar+gzip layer.
//
// KubeVirt reads the file as is, so a disk exported with zstd is decompressed into the layer. The layer is
// built into a temp file first, because the registry wants its digest before the upload; the tar's digest
// (the diff_id) is computed on the way.

// containerDiskOwner is the uid and gid of the qemu user that runs KubeVirt's VMs.
const containerDiskOwner = 107

// ContainerDisk is a disk file to publish as a KubeVirt containerDisk.
type ContainerDisk struct {
	PublishInfo
	// Path is the exported disk file: qcow2 or raw, plain or zstd-compressed (.zst).
	Path string
	// Format is "qcow2" or "raw"; Compression is "none" (or ""), "zstd" or "qcow2-zstd", as configured.
	Format, Compression string
	// Name is the file's name under /disk/; "" means Path's name without ".zst".
	Name string
	// TempDir holds the gzip-compressed layer until it is uploaded, about the size of Path. "" means
	// Path's folder, which has room for outputs.
	TempDir string
	// Architecture is the image config's GOARCH-style architecture; "" means amd64.
	Architecture string
}

// PublishContainerDisk pushes disk to ref as a KubeVirt containerDisk (see the comment above
// containerDiskOwner for the layout) and tags it last. The layer's file mtime is the Unix epoch and its
// gzip stream carries no time, so the same disk makes the same layer and a repeated publish uploads no
// layer again. opts are those of [Open], Mode aside (see publish.go).
func PublishContainerDisk(ctx context.Context, ref PublishRef, opts Options, disk ContainerDisk) (PublishResult, error) {
	fail := func(err error) (PublishResult, error) {
		return PublishResult{Ref: ref}, fmt.Errorf("publish %s as a containerDisk: %w", ref, err)
	}
	zstdIn, err := disk.normalize()
	if err != nil {
		return fail(err)
	}
	// Asked first, so that refused credentials are reported before the layer is built.
	c, err := openPublish(ctx, ref, opts)
	if err != nil {
		return fail(err)
	}
	tmp, err := os.CreateTemp(disk.TempDir, ".imgform-containerdisk-*.tar.gz")
	if err != nil {
		return fail(err)
	}
	defer func() {
		_ = tmp.Close() // closed already, or failed already
		_ = os.Remove(tmp.Name())
	}()
	size, err := plainSize(disk.Path, zstdIn, false)
	if err != nil {
		return fail(err)
	}
	layer, diffID, err := writeDiskLayer(ctx, tmp, disk, zstdIn, size)
	if errors.Is(err, errLongerThanHeader) {
		// Several frames, such as zstd -T or pzstd write: the header had the first one's size only.
		if size, err = plainSize(disk.Path, zstdIn, true); err != nil {
			return fail(err)
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return fail(err)
		}
		if err := tmp.Truncate(0); err != nil {
			return fail(err)
		}
		layer, diffID, err = writeDiskLayer(ctx, tmp, disk, zstdIn, size)
	}
	if err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	config, err := json.Marshal(ocispec.Image{
		Created:  &disk.Created,
		Platform: ocispec.Platform{Architecture: disk.Architecture, OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	})
	if err != nil {
		return fail(err)
	}
	blobs := []publishBlob{fileBlob(layer, tmp.Name()), bytesBlob(ocispec.MediaTypeImageConfig, config)}
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      blobs[1].desc,
		Layers:      []ocispec.Descriptor{layer},
		Annotations: disk.annotations(opts.Version),
	}
	res, err := pushImage(ctx, c, ref, blobs, m)
	if err != nil {
		return fail(err)
	}
	return res, nil
}

// normalize checks disk and fills in its defaults; it reports whether Path is zstd-compressed.
func (disk *ContainerDisk) normalize() (zstdIn bool, err error) {
	switch {
	case disk.Format != "qcow2" && disk.Format != "raw":
		return false, fmt.Errorf("format %q: a containerDisk holds a qcow2 or raw disk", disk.Format)
	case disk.Compression == "" || disk.Compression == "none":
	case disk.Compression == "zstd":
		zstdIn = true
	case disk.Compression == "qcow2-zstd" && disk.Format == "qcow2":
		// Compressed clusters are part of qcow2 (QEMU 5.1 and later): KubeVirt's QEMU reads the file as is.
	default:
		return false, fmt.Errorf("compression %q of a %s output is not one a containerDisk can be made from",
			disk.Compression, disk.Format)
	}
	if _, err := os.Stat(disk.Path); err != nil {
		return false, err
	}
	if disk.Name == "" {
		disk.Name = strings.TrimSuffix(filepath.Base(disk.Path), ".zst")
	}
	if disk.Name != filepath.Base(disk.Name) || disk.Name == "." || disk.Name == ".." || disk.Name == "/" {
		return false, fmt.Errorf("disk name %q: want a file name, without a folder", disk.Name)
	}
	if disk.TempDir == "" {
		disk.TempDir = filepath.Dir(disk.Path)
	}
	if disk.Architecture == "" {
		disk.Architecture = "amd64"
	}
	if disk.Created.IsZero() {
		disk.Created = time.Now()
	}
	disk.Created = disk.Created.UTC().Truncate(time.Second)
	return zstdIn, nil
}

// errLongerThanHeader is returned by writeDiskLayer when a zstd stream holds more than the size its
// frame header states.
var errLongerThanHeader = errors.New("the zstd stream holds more than its frame header says")

// writeDiskLayer writes the containerDisk's layer, gzip-compressed, to w, and returns its descriptor and
// diff_id (the sha256 of the uncompressed tar). The disk, size bytes, is streamed through: decompressed when
// zstdIn, checked to be a qcow2 without a backing file when it is one.
func writeDiskLayer(ctx context.Context, w io.Writer, disk ContainerDisk, zstdIn bool, size int64) (ocispec.Descriptor, digest.Digest, error) {
	var none ocispec.Descriptor
	f, err := os.Open(disk.Path)
	if err != nil {
		return none, "", err
	}
	defer f.Close() // only read
	var src io.Reader = f
	if zstdIn {
		dec, err := zstd.NewReader(bufio.NewReaderSize(f, 1<<20), zstd.WithDecoderMaxWindow(maxWindow))
		if err != nil {
			return none, "", err
		}
		defer dec.Close()
		src = dec
	}
	br := bufio.NewReaderSize(src, 1<<20)
	if disk.Format == "qcow2" {
		if err := checkPlainQcow2(br, disk.Path); err != nil {
			return none, "", err
		}
	}

	layerDigest := digest.Canonical.Digester()
	out := bufio.NewWriterSize(w, 1<<20)
	counted := &countingWriter{w: io.MultiWriter(out, layerDigest.Hash())}
	gz, err := gzip.NewWriterLevel(counted, gzip.DefaultCompression)
	if err != nil {
		return none, "", err
	}
	diffID := digest.Canonical.Digester()
	tw := tar.NewWriter(io.MultiWriter(gz, diffID.Hash()))
	epoch := time.Unix(0, 0)
	hdrs := []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "disk/", Mode: 0o555, Uid: containerDiskOwner, Gid: containerDiskOwner, ModTime: epoch},
		{Typeflag: tar.TypeReg, Name: "disk/" + disk.Name, Mode: 0o440, Size: size, Uid: containerDiskOwner, Gid: containerDiskOwner, ModTime: epoch},
	}
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			return none, "", err
		}
	}
	if n, err := io.Copy(tw, ctxReader{ctx: ctx, r: br}); err != nil {
		if errors.Is(err, tar.ErrWriteTooLong) && zstdIn {
			err = errLongerThanHeader
		}
		return none, "", fmt.Errorf("read %s: %w", disk.Path, err)
	} else if n != size {
		return none, "", fmt.Errorf("read %s: %d bytes, want %d", disk.Path, n, size)
	}
	if err := errors.Join(tw.Close(), gz.Close(), out.Flush()); err != nil {
		return none, "", err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: layerDigest.Digest(), Size: counted.n}
	return desc, diffID.Digest(), nil
}

// plainSize returns the size of the disk inside the file at path, which a tar header states before the
// content. A zstd stream says it in its frame header when the encoder knew it (imgform's exports do), and
// that is used unless count is set; otherwise the stream is decoded once to count, which is quick next to
// gzip. A frame header that states less than the stream holds (the first of several frames) makes
// writeDiskLayer fail with errLongerThanHeader, never a short disk.
func plainSize(path string, zstdIn, count bool) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close() // only read
	if !zstdIn {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	var h zstd.Header
	head := make([]byte, zstd.HeaderMaxSize)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	if err := h.Decode(head[:n]); err != nil {
		return 0, fmt.Errorf("%s is not zstd-compressed: %w", path, err)
	}
	if h.HasFCS && !count {
		return int64(h.FrameContentSize), nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	dec, err := zstd.NewReader(bufio.NewReaderSize(f, 1<<20), zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	size, err := io.Copy(io.Discard, dec)
	if err != nil {
		return 0, fmt.Errorf("decompress %s: %w", path, err)
	}
	return size, nil
}

// checkPlainQcow2 makes sure that what br starts with is a qcow2 header that names no backing file: a
// containerDisk holds one file, and KubeVirt would not find another.
func checkPlainQcow2(br *bufio.Reader, path string) error {
	head, err := br.Peek(16)
	if err != nil {
		return fmt.Errorf("%s is too short to be a qcow2 disk: %w", path, err)
	}
	if !bytes.Equal(head[:4], []byte("QFI\xfb")) {
		return fmt.Errorf("%s is not a qcow2 disk (format qcow2 was given)", path)
	}
	if binary.BigEndian.Uint64(head[8:16]) != 0 {
		return fmt.Errorf("%s has a backing file; a containerDisk needs a disk that stands alone", path)
	}
	return nil
}

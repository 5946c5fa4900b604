package remote

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The published artifact's format: what other tools (oras pull, a deployment's script) rely on. A change
// is a new version in the names, never a new meaning of the old ones.
const (
	// PublishArtifactType marks a manifest as an image built by imgform: its disk file, manifest and
	// checksums.
	PublishArtifactType = "application/vnd.imgform.image.v1"

	// Media types of the disk layer, by format and compression: the file as exported, never recompressed,
	// so that its digest is the sha256 in SHA256SUMS. A qcow2 whose clusters are compressed inside
	// (compression qcow2-zstd) is a qcow2 QEMU opens as it is, so it has qcow2's type.
	MediaTypeDiskQcow2     = "application/vnd.imgform.disk.qcow2"
	MediaTypeDiskQcow2Zstd = "application/vnd.imgform.disk.qcow2+zstd"
	MediaTypeDiskRaw       = "application/vnd.imgform.disk.raw"
	MediaTypeDiskRawZstd   = "application/vnd.imgform.disk.raw+zstd"
	MediaTypeDiskVMDK      = "application/vnd.imgform.disk.vmdk"
	MediaTypeDiskVMDKZstd  = "application/vnd.imgform.disk.vmdk+zstd"
	MediaTypeDiskVHDX      = "application/vnd.imgform.disk.vhdx"
	MediaTypeDiskVHDXZstd  = "application/vnd.imgform.disk.vhdx+zstd"

	// MediaTypeBuildManifest is the layer of <image>.manifest.json, the build's record.
	MediaTypeBuildManifest = "application/vnd.imgform.manifest.v1+json"
	// MediaTypeSums is the layer of the SHA256SUMS lines of the disk file, as "sha256sum -c" reads them.
	MediaTypeSums = "text/plain"

	// sumsTitle is the sums layer's file name, so that "oras pull" writes a file sha256sum -c can check.
	sumsTitle = "SHA256SUMS"
)

// maxBuildManifestSize bounds the manifest JSON Publish reads into memory; real ones are a few KB.
const maxBuildManifestSize = 1 << 20

// PublishFiles are the outputs of one image that [Publish] pushes, and what the artifact says about them.
type PublishFiles struct {
	PublishInfo
	// Disk is the exported file, such as out/debian-12-base-2026.11.qcow2.zst. It is streamed from disk.
	Disk string
	// Format ("qcow2" or "raw") and Compression ("none" or "", "zstd", "qcow2-zstd") are the output's, as
	// configured: they choose the disk layer's media type.
	Format, Compression string
	// Manifest is the image's <image>.manifest.json. When PublishInfo.Created is zero, its build_time is
	// the artifact's creation time (and the time of publishing when it has none).
	Manifest string
	// Sums are the SHA256SUMS lines of Disk, as written next to it (an unverified output's line is a
	// "# unverified:" comment there, and stays one here). They must state the sha256 Publish computes;
	// nil means one plain line made from it.
	Sums []byte
}

// DiskMediaType returns the media type of a disk layer of format and compression, as an output block
// names them.
func DiskMediaType(format, compression string) (string, error) {
	switch {
	case format == "qcow2" && (compression == "" || compression == "none" || compression == "qcow2-zstd"):
		return MediaTypeDiskQcow2, nil
	case format == "qcow2" && compression == "zstd":
		return MediaTypeDiskQcow2Zstd, nil
	case format == "raw" && (compression == "" || compression == "none"):
		return MediaTypeDiskRaw, nil
	case format == "raw" && compression == "zstd":
		return MediaTypeDiskRawZstd, nil
	case format == "vmdk" && (compression == "" || compression == "none"):
		return MediaTypeDiskVMDK, nil
	case format == "vmdk" && compression == "zstd":
		return MediaTypeDiskVMDKZstd, nil
	case format == "vhdx" && (compression == "" || compression == "none"):
		return MediaTypeDiskVHDX, nil
	case format == "vhdx" && compression == "zstd":
		return MediaTypeDiskVHDXZstd, nil
	}
	return "", fmt.Errorf("no media type for format %q with compression %q", format, compression)
}

// Publish pushes an image's outputs to ref as one OCI artifact (an image manifest with artifactType
// PublishArtifactType, the empty config of OCI 1.1 artifacts, annotations of files.PublishInfo) whose
// layers are, each titled with its file name (org.opencontainers.image.title, which "oras pull" uses):
//
//	the disk file    MediaTypeDisk*, as exported, so that its digest is its sha256
//	the manifest     MediaTypeBuildManifest, <image>.manifest.json
//	its checksums    MediaTypeSums, "SHA256SUMS": the disk's lines
//
// The disk file is read twice, never held in memory: once for its digest, which the registry wants
// before the upload, and once to upload it unless the registry has it already. A file that changes in
// between fails the upload (the registry checks the digest). The registry is asked first, so that refused
// credentials are reported before the file is read; ref's tag is written last. opts are those of [Open],
// Mode aside (see publish.go).
func Publish(ctx context.Context, ref PublishRef, opts Options, files PublishFiles) (PublishResult, error) {
	fail := func(err error) (PublishResult, error) {
		return PublishResult{Ref: ref}, fmt.Errorf("publish %s: %w", ref, err)
	}
	mediaType, err := DiskMediaType(files.Format, files.Compression)
	if err != nil {
		return fail(fmt.Errorf("disk %s: %w", files.Disk, err))
	}
	if files.Manifest == "" {
		return fail(errors.New("no manifest file given"))
	}
	manifestJSON, err := readBounded(files.Manifest, maxBuildManifestSize)
	if err != nil {
		return fail(err)
	}
	if files.Created.IsZero() {
		files.Created = buildTime(manifestJSON)
	}
	if _, err := os.Stat(files.Disk); err != nil {
		return fail(err)
	}
	c, err := openPublish(ctx, ref, opts)
	if err != nil {
		return fail(err)
	}
	disk, err := fileDescriptor(ctx, files.Disk, mediaType)
	if err != nil {
		return fail(err)
	}
	diskName := filepath.Base(files.Disk)
	sums := files.Sums
	if sums == nil {
		sums = []byte(disk.Digest.Encoded() + "  " + diskName + "\n")
	} else if err := checkSums(sums, disk.Digest, diskName); err != nil {
		return fail(err)
	}

	blobs := []publishBlob{
		fileBlob(disk, files.Disk),
		bytesBlob(MediaTypeBuildManifest, manifestJSON),
		bytesBlob(MediaTypeSums, sums),
		bytesBlob(ocispec.MediaTypeEmptyJSON, ocispec.DescriptorEmptyJSON.Data),
	}
	for i, title := range []string{diskName, filepath.Base(files.Manifest), sumsTitle} {
		blobs[i].desc.Annotations = map[string]string{ocispec.AnnotationTitle: title}
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: PublishArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Layers:       []ocispec.Descriptor{blobs[0].desc, blobs[1].desc, blobs[2].desc},
		Annotations:  files.annotations(opts.Version),
	}
	res, err := pushImage(ctx, c, ref, blobs, m)
	if err != nil {
		return fail(err)
	}
	return res, nil
}

// fileDescriptor reads the file at path once and returns its descriptor.
func fileDescriptor(ctx context.Context, path, mediaType string) (ocispec.Descriptor, error) {
	f, err := os.Open(path)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer f.Close() // only read
	d := digest.Canonical.Digester()
	n, err := io.Copy(d.Hash(), ctxReader{ctx: ctx, r: bufio.NewReaderSize(f, 1<<20)})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read %s: %w", path, err)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d.Digest(), Size: n}, nil
}

// readBounded reads a small file, refusing one larger than max.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() // only read
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is larger than the %d bytes expected of it", path, max)
	}
	return b, nil
}

// buildTime returns the build_time of an imgform manifest, or now when it has none.
func buildTime(manifestJSON []byte) time.Time {
	var m struct {
		BuildTime time.Time `json:"build_time"`
	}
	if json.Unmarshal(manifestJSON, &m) == nil && !m.BuildTime.IsZero() {
		return m.BuildTime
	}
	return time.Now()
}

// checkSums makes sure that the SHA256SUMS lines given for a file state the digest that is published:
// checksums that disagree with the blob next to them would fail every deployment that checks them.
func checkSums(sums []byte, d digest.Digest, name string) error {
	want := d.Encoded() + "  " + name
	for line := range strings.Lines(string(sums)) {
		line = strings.TrimRight(line, "\r\n")
		if strings.TrimPrefix(line, "# unverified: ") == want {
			return nil
		}
	}
	return fmt.Errorf("the SHA256SUMS lines given have no line %q: they do not describe the file published", want)
}

package remote

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// qemuImgCreate makes a qcow2 disk with qemu-img, as a user's build would, and returns its path and bytes.
func qemuImgCreate(t *testing.T, dir, name string, args ...string) (string, []byte) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("qemu-img is needed (Debian package qemu-utils): run scripts/install-deps.sh: %v", err)
	}
	path := filepath.Join(dir, name)
	args = append(append([]string{"create", "-q", "-f", "qcow2"}, args...), path, "64M")
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

// How zstdFile lays out its stream.
const (
	zstdSized     = iota // one frame whose header states the content size, as imgform's exports write it
	zstdStreamed         // one frame without the size, as a streaming encoder not told the size writes it
	zstdTwoFrames        // two frames with sizes, as zstd -T or pzstd write: the first header states half
)

// zstdFile compresses b into path, laid out as layout says.
func zstdFile(t *testing.T, path string, b []byte, layout int) {
	t.Helper()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	switch layout {
	case zstdSized:
		out.Write(enc.EncodeAll(b, nil))
	case zstdTwoFrames:
		out.Write(enc.EncodeAll(b[:len(b)/2], nil))
		out.Write(enc.EncodeAll(b[len(b)/2:], nil))
	case zstdStreamed:
		enc.Reset(&out)
		if _, err := enc.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var h zstd.Header
	if err := h.Decode(out.Bytes()); err != nil || h.HasFCS != (layout != zstdStreamed) {
		t.Fatalf("test setup: zstd header %+v, %v; want the content size in it unless streamed", h, err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPublishContainerDisk publishes a qcow2 as a KubeVirt containerDisk, plain and from zstd, pulls the
// image back with oras-go and checks what a container runtime and KubeVirt read: config, diff_id, the
// file under disk/ with its owner and mode and the exact bytes qemu-img wrote.
func TestPublishContainerDisk(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.Options{})
	src := t.TempDir()
	qcow2Path, qcow2 := qemuImgCreate(t, src, "debian-12-base-2026.11.qcow2")
	// The same name in folders of their own: the name under disk/ comes from the file's.
	zstdPath := func(layout int) string {
		dir := filepath.Join(src, fmt.Sprint(layout))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "debian-12-base-2026.11.qcow2.zst")
		zstdFile(t, path, qcow2, layout)
		return path
	}
	created := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	opts := publishOptions(t, reg, env{})
	c := openRepo(t, reg, Ref{reg.Host, "imgform/debian-12-base"})

	cases := map[string]ContainerDisk{
		"qcow2":                          {Path: qcow2Path, Format: "qcow2", Compression: "none"},
		"qcow2.zst with content size":    {Path: zstdPath(zstdSized), Format: "qcow2", Compression: "zstd"},
		"qcow2.zst without content size": {Path: zstdPath(zstdStreamed), Format: "qcow2", Compression: "zstd"},
		"qcow2.zst of two frames":        {Path: zstdPath(zstdTwoFrames), Format: "qcow2", Compression: "zstd"},
	}
	var layerDigest digest.Digest
	for name, disk := range cases {
		t.Run(name, func(t *testing.T) {
			disk.PublishInfo = PublishInfo{Image: "debian-12-base", Created: created}
			disk.TempDir = t.TempDir()
			ref := PublishRef{c.Ref(), strings.NewReplacer(" ", "-", ".", "-").Replace(name)}
			res, err := PublishContainerDisk(ctx, ref, opts, disk)
			if err != nil {
				t.Fatal(err)
			}
			if left, _ := os.ReadDir(disk.TempDir); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
			desc, m := fetchManifest(t, c, ref)
			if desc.Digest.String() != res.Digest || desc.MediaType != ocispec.MediaTypeImageManifest {
				t.Errorf("the tag names a %s %s, Publish reported %s", desc.MediaType, desc.Digest, res.Digest)
			}
			if m.ArtifactType != "" || m.Config.MediaType != ocispec.MediaTypeImageConfig || len(m.Layers) != 1 ||
				m.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
				t.Fatalf("manifest: artifactType %q, config %q, layers %v; want an image with one tar+gzip layer",
					m.ArtifactType, m.Config.MediaType, m.Layers)
			}
			var config ocispec.Image
			if err := json.Unmarshal(fetchBlob(t, c, m.Config), &config); err != nil {
				t.Fatal(err)
			}
			if config.Architecture != "amd64" || config.OS != "linux" || config.RootFS.Type != "layers" ||
				len(config.RootFS.DiffIDs) != 1 || config.Created == nil || !config.Created.Equal(created) {
				t.Errorf("config: %+v", config)
			}

			layer := fetchBlob(t, c, m.Layers[0])
			zr, err := gzip.NewReader(bytes.NewReader(layer))
			if err != nil {
				t.Fatal(err)
			}
			tarball, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if got := digest.FromBytes(tarball); len(config.RootFS.DiffIDs) == 1 && got != config.RootFS.DiffIDs[0] {
				t.Errorf("diff_id %s, the layer's tar is %s", config.RootFS.DiffIDs[0], got)
			}
			files := untar(t, tarball)
			if d, ok := files["disk/"]; !ok || d.hdr.Typeflag != tar.TypeDir || d.hdr.Uid != 107 || d.hdr.Gid != 107 {
				t.Errorf("disk/: %+v", d.hdr)
			}
			f, ok := files["disk/debian-12-base-2026.11.qcow2"]
			if !ok || len(files) != 2 {
				t.Fatalf("the layer holds %v; want disk/ and disk/debian-12-base-2026.11.qcow2", files)
			}
			if f.hdr.Uid != 107 || f.hdr.Gid != 107 || f.hdr.Mode != 0o440 || f.hdr.Typeflag != tar.TypeReg {
				t.Errorf("disk file: uid %d gid %d mode %o type %c; want 107, 107, 440, a file",
					f.hdr.Uid, f.hdr.Gid, f.hdr.Mode, f.hdr.Typeflag)
			}
			if !bytes.Equal(f.content, qcow2) {
				t.Error("the disk file in the layer differs from the qcow2 qemu-img made")
			}
			// Every input makes the same layer: the disk inside is the same, and nothing else varies.
			if layerDigest == "" {
				layerDigest = m.Layers[0].Digest
			} else if m.Layers[0].Digest != layerDigest {
				t.Errorf("layer %s, another case made %s of the same disk", m.Layers[0].Digest, layerDigest)
			}

			again, err := PublishContainerDisk(ctx, ref, opts, disk)
			if err != nil {
				t.Fatal(err)
			}
			if again.BytesPushed != 0 || again.Tagged || again.Digest != res.Digest {
				t.Errorf("second publish: %+v; want nothing pushed and the same digest", again)
			}
		})
	}
}

// TestContainerDiskRefusals covers the disks a containerDisk cannot be made of. Each fails before anything
// is pushed and leaves no temp file.
func TestContainerDiskRefusals(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	dir := t.TempDir()
	base, _ := qemuImgCreate(t, dir, "base.qcow2")
	overlay, _ := qemuImgCreate(t, dir, "overlay.qcow2", "-b", base, "-F", "qcow2")
	raw := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(raw, noise(64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		disk ContainerDisk
		says string
	}{
		"backing file":     {ContainerDisk{Path: overlay, Format: "qcow2"}, "has a backing file"},
		"raw given qcow2":  {ContainerDisk{Path: raw, Format: "qcow2"}, "is not a qcow2 disk"},
		"not zstd":         {ContainerDisk{Path: raw, Format: "raw", Compression: "zstd"}, "is not zstd-compressed"},
		"unknown format":   {ContainerDisk{Path: raw, Format: "vmdk"}, "qcow2 or raw"},
		"raw, qcow2-zstd":  {ContainerDisk{Path: raw, Format: "raw", Compression: "qcow2-zstd"}, "compression"},
		"name with folder": {ContainerDisk{Path: base, Format: "qcow2", Name: "a/b.qcow2"}, "without a folder"},
		"missing file":     {ContainerDisk{Path: filepath.Join(dir, "none.qcow2"), Format: "qcow2"}, "no such file"},
	}
	ref := PublishRef{Ref{reg.Host, "imgform/disk"}, "v1"}
	opts := publishOptions(t, reg, env{})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.disk.TempDir = t.TempDir()
			_, err := PublishContainerDisk(context.Background(), ref, opts, tc.disk)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("PublishContainerDisk: %v; want an error saying %q", err, tc.says)
			}
			t.Log(err)
			if left, _ := os.ReadDir(tc.disk.TempDir); len(left) != 0 {
				t.Errorf("temp files left: %v", left)
			}
		})
	}
	c := openRepo(t, reg, ref.Ref)
	if _, err := c.repo.Resolve(context.Background(), ref.Tag); err == nil {
		t.Error("a refused publish wrote its tag")
	}
}

// tarFile is one entry of a tar.
type tarFile struct {
	hdr     *tar.Header
	content []byte
}

// untar returns the entries of a tar by name.
func untar(t *testing.T, b []byte) map[string]tarFile {
	t.Helper()
	files := map[string]tarFile{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = tarFile{hdr: hdr, content: content}
	}
}

package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

func TestParsePublishRef(t *testing.T) {
	good := map[string]PublishRef{
		"oci://registry.example.com/group/images:debian-12": {Ref{"registry.example.com", "group/images"}, "debian-12"},
		"oci://127.0.0.1:5000/imgform/images:2026.11":       {Ref{"127.0.0.1:5000", "imgform/images"}, "2026.11"},
		"oci://[::1]:5000/a:latest":                         {Ref{"[::1]:5000", "a"}, "latest"},
	}
	for in, want := range good {
		t.Run(in, func(t *testing.T) {
			got, err := ParsePublishRef(in)
			if err != nil || got != want {
				t.Fatalf("ParsePublishRef = %+v, %v; want %+v", got, err, want)
			}
			if got.String() != in {
				t.Errorf("String() = %q, want %q", got.String(), in)
			}
		})
	}
	bad := map[string]string{
		"no tag":            "oci://registry.example.com/group/images",
		"port but no tag":   "oci://127.0.0.1:5000/group/images",
		"digest":            "oci://registry.example.com/group/images@sha256:" + strings.Repeat("a", 64),
		"tag and digest":    "oci://registry.example.com/group/images:v1@sha256:" + strings.Repeat("a", 64),
		"empty tag":         "oci://registry.example.com/group/images:",
		"bad tag":           "oci://registry.example.com/group/images:-v1",
		"no scheme":         "registry.example.com/group/images:v1",
		"other scheme":      "https://registry.example.com/group/images:v1",
		"no repository":     "oci://registry.example.com:v1",
		"uppercase":         "oci://registry.example.com/Group/images:v1",
		"bad host":          "oci://registry example.com/group/images:v1",
		"empty repo part":   "oci://registry.example.com/group//images:v1",
		"repository is tag": "oci://registry.example.com/:v1",
		"two colons":        "oci://registry.example.com/group:x/images:v1",
	}
	says := map[string]string{
		"no tag":          "has no tag",
		"port but no tag": "has no tag",
		"digest":          "names a digest",
		"tag and digest":  "names a digest",
		"uppercase":       "bad repository name",
		"two colons":      "bad repository name",
		"no repository":   "a repository after the host",
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := ParsePublishRef(in)
			if err == nil {
				t.Fatalf("ParsePublishRef(%q) succeeded", in)
			}
			t.Log(err)
			if strings.Contains(err.Error(), "remote cache") {
				t.Errorf("the error speaks of a remote cache: %v", err)
			}
			if s := says[name]; s != "" && !strings.Contains(err.Error(), s) {
				t.Errorf("the error does not say %q", s)
			}
		})
	}
}

func FuzzParsePublishRef(f *testing.F) {
	for _, s := range []string{"oci://h/r:t", "oci://127.0.0.1:5000/a/b:v1.0", "oci://h/r@sha256:00", "oci://[::1]/x:y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParsePublishRef(s)
		if err != nil {
			return
		}
		again, err := ParsePublishRef(ref.String())
		if err != nil || again != ref {
			t.Fatalf("ParsePublishRef(%q) = %+v, but ParsePublishRef of its String() = %+v, %v", s, ref, again, err)
		}
	})
}

// outputs writes what an export leaves in a folder for one image: the disk file and its manifest.
func outputs(t *testing.T, disk []byte) (diskPath, manifestPath string, buildTime time.Time) {
	t.Helper()
	dir := t.TempDir()
	diskPath = filepath.Join(dir, "debian-12-base-2026.11.qcow2.zst")
	manifestPath = filepath.Join(dir, "debian-12-base.manifest.json")
	buildTime = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	manifest := `{"format_version": 1, "image": "debian-12-base", "build_time": "2026-11-30T12:00:00Z"}`
	if err := os.WriteFile(diskPath, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifestPath, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return diskPath, manifestPath, buildTime
}

// publishOptions are Options for the test registry with credentials from e only, as openCache has them.
func publishOptions(t *testing.T, reg *registrytest.Registry, e env) Options {
	return Options{
		CAFile:       reg.CAFile,
		DockerConfig: filepath.Join(t.TempDir(), "config.json"),
		Version:      "test",
		Logf:         t.Logf,
		Getenv:       e.get,
	}
}

// openRepo connects to a repository of the test registry without credentials, to read it back.
func openRepo(t *testing.T, reg *registrytest.Registry, ref Ref) *Cache {
	t.Helper()
	c, err := Open(context.Background(), ref, publishOptions(t, reg, env{}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fetchManifest reads back, with oras-go, the manifest ref's tag names.
func fetchManifest(t *testing.T, c *Cache, ref PublishRef) (ocispec.Descriptor, ocispec.Manifest) {
	t.Helper()
	ctx := context.Background()
	desc, err := c.repo.Resolve(ctx, ref.Tag)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(fetchBlob(t, c, desc), &m); err != nil {
		t.Fatal(err)
	}
	return desc, m
}

// fetchBlob reads back a blob or manifest and checks it against its digest.
func fetchBlob(t *testing.T, c *Cache, desc ocispec.Descriptor) []byte {
	t.Helper()
	b, err := content.FetchAll(context.Background(), c.repo, desc)
	if err != nil {
		t.Fatalf("fetch %s: %v", desc.Digest, err)
	}
	return b
}

// TestPublish publishes an image's outputs, reads the artifact back with oras-go, and publishes again.
func TestPublish(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.Options{})
	disk := noise(3 << 20)
	diskPath, manifestPath, buildTime := outputs(t, disk)
	sum := sha256.Sum256(disk)
	sums := "# unverified: " + hex.EncodeToString(sum[:]) + "  debian-12-base-2026.11.qcow2.zst\n"
	ref := PublishRef{Ref{reg.Host, "imgform/images"}, "debian-12-base"}
	files := PublishFiles{
		PublishInfo: PublishInfo{
			Image:       "debian-12-base",
			Source:      "https://gitlab.example.com/group/images",
			Revision:    "0123abcd",
			Annotations: map[string]string{"com.example.pipeline": "42", ocispec.AnnotationTitle: "overridden"},
		},
		Disk: diskPath, Format: "qcow2", Compression: "zstd", Manifest: manifestPath, Sums: []byte(sums),
	}
	opts := publishOptions(t, reg, env{})
	res, err := Publish(ctx, ref, opts, files)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Tagged || res.BlobsPushed != 4 || res.BytesPushed < int64(len(disk)) || res.Size < int64(len(disk)) {
		t.Errorf("first publish: %+v; want 4 blobs and the disk pushed, and the tag written", res)
	}

	c := openRepo(t, reg, ref.Ref)
	desc, m := fetchManifest(t, c, ref)
	if desc.Digest.String() != res.Digest {
		t.Errorf("the tag names %s, Publish reported %s", desc.Digest, res.Digest)
	}
	if m.ArtifactType != PublishArtifactType || m.Config.MediaType != ocispec.MediaTypeEmptyJSON {
		t.Errorf("artifactType %q, config %q", m.ArtifactType, m.Config.MediaType)
	}
	wantAnnotations := map[string]string{
		ocispec.AnnotationCreated:  buildTime.Format(time.RFC3339),
		ocispec.AnnotationVersion:  "test",
		ocispec.AnnotationTitle:    "debian-12-base",
		ocispec.AnnotationSource:   "https://gitlab.example.com/group/images",
		ocispec.AnnotationRevision: "0123abcd",
		AnnotationImage:            "debian-12-base",
		AnnotationVersion:          "test",
		"com.example.pipeline":     "42",
	}
	for k, v := range wantAnnotations {
		if m.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], v)
		}
	}
	manifestJSON, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	wantLayers := []struct {
		mediaType, title string
		content          []byte
	}{
		{MediaTypeDiskQcow2Zstd, "debian-12-base-2026.11.qcow2.zst", disk},
		{MediaTypeBuildManifest, "debian-12-base.manifest.json", manifestJSON},
		{MediaTypeSums, "SHA256SUMS", []byte(sums)},
	}
	if len(m.Layers) != len(wantLayers) {
		t.Fatalf("%d layers, want %d", len(m.Layers), len(wantLayers))
	}
	for i, want := range wantLayers {
		l := m.Layers[i]
		if l.MediaType != want.mediaType || l.Annotations[ocispec.AnnotationTitle] != want.title {
			t.Errorf("layer %d: %s titled %q, want %s titled %q", i, l.MediaType, l.Annotations[ocispec.AnnotationTitle],
				want.mediaType, want.title)
		}
		if !bytes.Equal(fetchBlob(t, c, l), want.content) {
			t.Errorf("layer %d (%s) is not byte-identical to the file", i, want.title)
		}
	}
	if m.Layers[0].Digest.Encoded() != hex.EncodeToString(sum[:]) {
		t.Error("the disk layer's digest is not the file's sha256")
	}

	again, err := Publish(ctx, ref, opts, files)
	if err != nil {
		t.Fatal(err)
	}
	if again.BytesPushed != 0 || again.BlobsPushed != 0 || again.BlobsSkipped != 4 || again.Tagged || again.Digest != res.Digest {
		t.Errorf("second publish: %+v; want nothing pushed and the same digest", again)
	}

	// Sums that do not describe the file are refused before anything is pushed.
	files.Sums = []byte(strings.Repeat("0", 64) + "  debian-12-base-2026.11.qcow2.zst\n")
	if _, err := Publish(ctx, PublishRef{ref.Ref, "wrong-sums"}, opts, files); err == nil || !strings.Contains(err.Error(), "SHA256SUMS") {
		t.Errorf("Publish with sums of other content: %v; want an error about SHA256SUMS", err)
	}
	if _, err := c.repo.Resolve(ctx, "wrong-sums"); err == nil {
		t.Error("a refused publish wrote its tag")
	}

	// Without sums, Publish writes the line itself.
	files.Sums = nil
	res, err = Publish(ctx, PublishRef{ref.Ref, "own-sums"}, opts, files)
	if err != nil {
		t.Fatal(err)
	}
	_, m = fetchManifest(t, c, res.Ref)
	want := hex.EncodeToString(sum[:]) + "  debian-12-base-2026.11.qcow2.zst\n"
	if got := string(fetchBlob(t, c, m.Layers[2])); got != want {
		t.Errorf("SHA256SUMS layer = %q, want %q", got, want)
	}
}

// TestPublishCredentials publishes to a registry with TLS and htpasswd, the way the cache uses it.
func TestPublishCredentials(t *testing.T) {
	ctx := context.Background()
	const user, password = "ci", "s3cret-pass"
	reg := registrytest.Start(t, registrytest.Options{TLS: true, Users: map[string]string{user: password}})
	diskPath, manifestPath, _ := outputs(t, noise(64<<10))
	files := PublishFiles{PublishInfo: PublishInfo{Image: "debian-12-base"}, Disk: diskPath, Format: "qcow2",
		Compression: "zstd", Manifest: manifestPath}
	ref := PublishRef{Ref{reg.Host, "imgform/images"}, "v1"}

	_, err := Publish(ctx, ref, publishOptions(t, reg, env{EnvUser: user, EnvPassword: "wrong-pass"}), files)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Publish with a wrong password: %v; want an error wrapping ErrUnauthorized", err)
	}
	t.Log(err)
	for _, s := range []string{ref.String(), `refused IMGFORM_REGISTRY_USER (user "ci")`, "check the user name and password"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the error does not say %q", s)
		}
	}
	if strings.Contains(err.Error(), "wrong-pass") {
		t.Error("the error shows the password")
	}

	if _, err := Publish(ctx, ref, publishOptions(t, reg, env{}), files); !errors.Is(err, ErrUnauthorized) ||
		!strings.Contains(err.Error(), "none were found") {
		t.Errorf("Publish without credentials: %v; want an error saying none were found", err)
	}

	res, err := Publish(ctx, ref, publishOptions(t, reg, env{EnvUser: user, EnvPassword: password}), files)
	if err != nil || !res.Tagged {
		t.Fatalf("Publish with the right credentials: %+v, %v", res, err)
	}
}

func TestDiskMediaType(t *testing.T) {
	cases := map[[2]string]string{
		{"qcow2", ""}:           MediaTypeDiskQcow2,
		{"qcow2", "none"}:       MediaTypeDiskQcow2,
		{"qcow2", "qcow2-zstd"}: MediaTypeDiskQcow2,
		{"qcow2", "zstd"}:       MediaTypeDiskQcow2Zstd,
		{"raw", "none"}:         MediaTypeDiskRaw,
		{"raw", "zstd"}:         MediaTypeDiskRawZstd,
		{"raw", "qcow2-zstd"}:   "",
		{"vmdk", "none"}:        MediaTypeDiskVMDK,
		{"vmdk", "zstd"}:        MediaTypeDiskVMDKZstd,
		{"vhdx", ""}:            MediaTypeDiskVHDX,
		{"vhdx", "zstd"}:        MediaTypeDiskVHDXZstd,
		{"vhdx", "qcow2-zstd"}:  "",
		{"vdi", "none"}:         "",
	}
	for in, want := range cases {
		got, err := DiskMediaType(in[0], in[1])
		if got != want || (err == nil) != (want != "") {
			t.Errorf("DiskMediaType(%q, %q) = %q, %v; want %q", in[0], in[1], got, err, want)
		}
	}
}

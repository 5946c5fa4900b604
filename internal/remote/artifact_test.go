package remote

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"gitlab.com/imgform/imgform/internal/state"
)

// sampleManifest builds the manifest Push would write for a two-file object, and returns it decoded so that
// a test can damage it.
func sampleManifest(t *testing.T) (state.Key, ocispec.Manifest) {
	t.Helper()
	key := testKey("sample")
	files := []state.FileSum{
		{Name: "disk.qcow2", Size: 10, SHA256: digest.FromString("disk").Encoded()},
		{Name: "id_ed25519", Size: 3, SHA256: digest.FromString("key").Encoded()},
	}
	meta := state.Meta{
		FormatVersion: 1, Key: key, Info: state.Info{Kind: "disk"}, Size: 13, SHA256: state.ObjectDigest(files),
		Files: files, Created: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC),
	}
	metaJSON, err := json.Marshal(&meta)
	if err != nil {
		t.Fatal(err)
	}
	var layers []layerFile
	for _, f := range files {
		layers = append(layers, layerFile{
			desc: ocispec.Descriptor{MediaType: MediaTypeFile, Digest: digest.FromString(f.Name), Size: 5},
			file: f, mode: 0o444,
		})
	}
	b, err := buildManifest(&meta, metaJSON, layers, map[string]string{"x": "y"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return key, m
}

func parseSample(t *testing.T, key state.Key, m ocispec.Manifest) (*Entry, error) {
	t.Helper()
	b, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	return parseManifest(key, ocispec.Descriptor{Digest: digest.FromBytes(b)}, b, func(ocispec.Descriptor) ([]byte, error) {
		return nil, errors.New("meta.json not embedded")
	})
}

func TestParseManifest(t *testing.T) {
	key, good := sampleManifest(t)
	e, err := parseSample(t, key, good)
	if err != nil {
		t.Fatal(err)
	}
	if e.Size != 10 || e.Meta.Kind != "disk" || e.Annotations["x"] != "y" || e.Annotations[AnnotationKey] != key.String() {
		t.Errorf("entry = %+v", e)
	}

	// Each case damages a fresh copy of the good manifest, as a broken or hostile registry could.
	tests := map[string]struct {
		damage func(m *ocispec.Manifest)
		key    state.Key
		want   error
	}{
		"another artifact type": {damage: func(m *ocispec.Manifest) { m.ArtifactType = "application/vnd.other" }, want: ErrNotStep},
		"another key":           {damage: func(m *ocispec.Manifest) {}, key: testKey("other"), want: state.ErrCorrupt},
		"embedded meta.json altered": {damage: func(m *ocispec.Manifest) {
			m.Config.Data = append([]byte(nil), m.Config.Data...)
			m.Config.Data[10] ^= 1
		}, want: state.ErrCorrupt},
		"huge meta.json": {damage: func(m *ocispec.Manifest) { m.Config.Size = 1 << 40 }, want: state.ErrCorrupt},
		"layer missing":  {damage: func(m *ocispec.Manifest) { m.Layers = m.Layers[:1] }, want: state.ErrCorrupt},
		"path as file name": {damage: func(m *ocispec.Manifest) {
			m.Layers[0].Annotations[ocispec.AnnotationTitle] = "../../../../etc/passwd"
		}, want: state.ErrCorrupt},
		"two layers for one file": {damage: func(m *ocispec.Manifest) {
			m.Layers[1].Annotations = m.Layers[0].Annotations
		}, want: state.ErrCorrupt},
		"size annotation lies": {damage: func(m *ocispec.Manifest) {
			m.Layers[0].Annotations[annotationFileSize] = "11"
		}, want: state.ErrCorrupt},
		"other media type": {damage: func(m *ocispec.Manifest) { m.Layers[0].MediaType = "application/gzip" }, want: state.ErrCorrupt},
		"bad digest":       {damage: func(m *ocispec.Manifest) { m.Layers[0].Digest = "sha256:xyz" }, want: state.ErrCorrupt},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, m := sampleManifest(t)
			tc.damage(&m)
			k := key
			if !tc.key.IsZero() {
				k = tc.key
			}
			_, err := parseSample(t, k, m)
			if !errors.Is(err, tc.want) {
				t.Fatalf("parseManifest: %v, want an error wrapping %v", err, tc.want)
			}
			t.Log(err)
		})
	}
}

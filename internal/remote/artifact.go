package remote

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"gitlab.com/imgform/imgform/internal/state"
)

// The artifact format. Changing any of these makes older imgform builds miss on newer artifacts (and the
// other way round), so a change is a new version in the names, never a new meaning of the old ones.
const (
	// ArtifactType marks a manifest as one step result.
	ArtifactType = "application/vnd.imgform.step.v1"
	// MediaTypeMeta is the config blob: the object's meta.json, as the store writes it.
	MediaTypeMeta = "application/vnd.imgform.meta.v1+json"
	// MediaTypeFile is a layer: one file of the object, compressed with zstd.
	MediaTypeFile = "application/vnd.imgform.file.v1+zstd"

	// tagPrefix starts every tag the cache writes: a tag is tagPrefix + the key in hex (69 characters, inside
	// the 128 the OCI tag grammar allows). It keeps the cache's tags apart from anything else in the
	// repository, such as published images.
	tagPrefix = "step-"
)

// Annotation keys. The manifest carries those of the object (for humans browsing the registry and for
// List without fetching meta.json), each layer those of its file.
const (
	annotationPrefix  = "com.gitlab.imgform."
	AnnotationKey     = annotationPrefix + "key"
	AnnotationKind    = annotationPrefix + "kind"
	AnnotationImage   = annotationPrefix + "image"
	AnnotationStep    = annotationPrefix + "step"
	AnnotationParent  = annotationPrefix + "parent"
	AnnotationVersion = annotationPrefix + "version" // of the imgform that pushed it

	annotationFileSHA256 = annotationPrefix + "file.sha256" // of the uncompressed file
	annotationFileSize   = annotationPrefix + "file.size"   // of the uncompressed file
	annotationFileMode   = annotationPrefix + "file.mode"   // permission bits, octal
)

// ErrNotStep is wrapped by lookups that find, under a step's tag, something that is not an imgform step.
var ErrNotStep = errors.New("not an imgform step result")

// Bounds on what is read from a registry before it is checked, so that a hostile or broken registry cannot
// make imgform read without end. Real manifests are a few KB; meta.json is bounded like the store bounds it.
const (
	maxManifestSize = 4 << 20
	maxMetaSize     = 1 << 20
	maxLayers       = 1000
)

// Tag returns the tag under which the object of key is stored.
func Tag(key state.Key) string { return tagPrefix + key.String() }

// keyOfTag returns the key a tag of the cache stands for; ok is false for other tags.
func keyOfTag(tag string) (state.Key, bool) {
	hex, ok := strings.CutPrefix(tag, tagPrefix)
	if !ok {
		return state.Key{}, false
	}
	key, err := state.ParseKey(hex)
	return key, err == nil
}

// Entry is a step result held by the remote cache.
type Entry struct {
	Key state.Key
	// Meta is the object's metadata, checked by [state.Meta.Validate]: what a pull would import.
	Meta state.Meta
	// Size is the total size of the compressed blobs: what a pull downloads. Meta.Size is the size on disk.
	Size int64
	// Digest is the manifest's digest.
	Digest string
	// Annotations are the manifest's annotations.
	Annotations map[string]string

	manifest ocispec.Manifest
}

// layerFile pairs a layer with the file it holds.
type layerFile struct {
	desc ocispec.Descriptor
	file state.FileSum
	mode uint32
}

// buildManifest returns the manifest of an object whose meta.json is metaJSON and whose files are layers.
func buildManifest(meta *state.Meta, metaJSON []byte, layers []layerFile, extra map[string]string, version string) ([]byte, error) {
	config := ocispec.Descriptor{
		MediaType: MediaTypeMeta,
		Digest:    digest.FromBytes(metaJSON),
		Size:      int64(len(metaJSON)),
		// Embedded (OCI 1.1 "data") so that a lookup costs one request; the blob is pushed as well, for
		// registries and tools that ignore the field.
		Data: metaJSON,
	}
	annotations := maps.Clone(extra)
	if annotations == nil {
		annotations = map[string]string{}
	}
	maps.Copy(annotations, map[string]string{
		ocispec.AnnotationCreated: meta.Created.UTC().Format(time.RFC3339),
		AnnotationKey:             meta.Key.String(),
		AnnotationKind:            meta.Kind,
		AnnotationVersion:         version,
	})
	for k, v := range map[string]string{AnnotationImage: meta.Image, AnnotationStep: meta.Step} {
		if v != "" {
			annotations[k] = v
		}
	}
	if !meta.Parent.IsZero() {
		annotations[AnnotationParent] = meta.Parent.String()
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       config,
		Annotations:  annotations,
	}
	for _, l := range layers {
		d := l.desc
		d.Annotations = map[string]string{
			ocispec.AnnotationTitle: l.file.Name,
			annotationFileSHA256:    l.file.SHA256,
			annotationFileSize:      strconv.FormatInt(l.file.Size, 10),
			annotationFileMode:      strconv.FormatUint(uint64(l.mode), 8),
		}
		m.Layers = append(m.Layers, d)
	}
	return json.Marshal(&m)
}

// parseManifest checks a manifest fetched for key and returns its entry, with the meta.json it embeds. A
// manifest that is not an imgform step is an error; one whose layers disagree with its meta.json is an
// error wrapping state.ErrCorrupt. meta.json that is not embedded is fetched by fetchMeta.
func parseManifest(key state.Key, desc ocispec.Descriptor, b []byte, fetchMeta func(ocispec.Descriptor) ([]byte, error)) (*Entry, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w: %w", err, state.ErrCorrupt)
	}
	if m.ArtifactType != ArtifactType || m.Config.MediaType != MediaTypeMeta {
		return nil, fmt.Errorf("tag %s holds a %q artifact with a %q config: %w", Tag(key), m.ArtifactType,
			m.Config.MediaType, ErrNotStep)
	}
	if m.Config.Size < 0 || m.Config.Size > maxMetaSize {
		return nil, fmt.Errorf("manifest: meta.json of %d bytes, more than the %d imgform reads: %w",
			m.Config.Size, maxMetaSize, state.ErrCorrupt)
	}
	if len(m.Layers) > maxLayers {
		return nil, fmt.Errorf("manifest: %d layers, more than the %d imgform reads: %w", len(m.Layers), maxLayers,
			state.ErrCorrupt)
	}
	metaJSON := m.Config.Data
	if metaJSON == nil {
		var err error
		if metaJSON, err = fetchMeta(m.Config); err != nil {
			return nil, err
		}
	} else if int64(len(metaJSON)) != m.Config.Size || digest.FromBytes(metaJSON) != m.Config.Digest {
		return nil, fmt.Errorf("manifest: embedded meta.json does not match its digest: %w", state.ErrCorrupt)
	}
	e := &Entry{Key: key, Digest: desc.Digest.String(), Annotations: m.Annotations, manifest: m}
	if err := json.Unmarshal(metaJSON, &e.Meta); err != nil {
		return nil, fmt.Errorf("meta.json: %w: %w", err, state.ErrCorrupt)
	}
	if err := e.Meta.Validate(key); err != nil {
		return nil, err
	}
	if _, err := e.layers(); err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		e.Size += l.Size
	}
	return e, nil
}

// layers pairs the manifest's layers with the files of Meta, one each, and checks that the annotations
// agree with meta.json.
func (e *Entry) layers() ([]layerFile, error) {
	m := e.manifest
	if len(m.Layers) != len(e.Meta.Files) {
		return nil, fmt.Errorf("manifest has %d layers for %d files: %w", len(m.Layers), len(e.Meta.Files), state.ErrCorrupt)
	}
	out := make([]layerFile, 0, len(m.Layers))
	for _, l := range m.Layers {
		name := l.Annotations[ocispec.AnnotationTitle]
		file, ok := e.Meta.File(name)
		if !ok {
			return nil, fmt.Errorf("layer %s holds %q, which meta.json does not list: %w", l.Digest, name, state.ErrCorrupt)
		}
		if l.MediaType != MediaTypeFile {
			return nil, fmt.Errorf("layer of %q: media type %q, want %q: %w", name, l.MediaType, MediaTypeFile, state.ErrCorrupt)
		}
		if l.Size < 0 || l.Digest.Validate() != nil {
			return nil, fmt.Errorf("layer of %q: bad size %d or digest %q: %w", name, l.Size, l.Digest, state.ErrCorrupt)
		}
		if l.Annotations[annotationFileSHA256] != file.SHA256 || l.Annotations[annotationFileSize] != strconv.FormatInt(file.Size, 10) {
			return nil, fmt.Errorf("layer of %q: annotations disagree with meta.json: %w", name, state.ErrCorrupt)
		}
		mode, err := strconv.ParseUint(l.Annotations[annotationFileMode], 8, 32)
		if err != nil {
			mode = 0o444
		}
		out = append(out, layerFile{desc: l, file: file, mode: uint32(mode)})
	}
	seen := map[string]bool{}
	for _, l := range out {
		if seen[l.file.Name] {
			return nil, fmt.Errorf("two layers hold %q: %w", l.file.Name, state.ErrCorrupt)
		}
		seen[l.file.Name] = true
	}
	return out, nil
}

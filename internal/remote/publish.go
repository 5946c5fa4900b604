package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// Publishing puts an image's outputs where deployments take them from, in two forms (see [Publish] and
// [PublishContainerDisk]). It shares the cache's connection code ([Open]): the same credentials, CA file
// and plain-HTTP rules apply, so a CI job that can use the cache can publish with nothing more to set up.
// Options.Mode is the cache's and does not apply: publishing is asked for by the configuration.

// PublishRef names where an image is published: a tag in a repository, oci://HOST[:PORT]/REPOSITORY:TAG.
type PublishRef struct {
	Ref
	Tag string
}

// String returns the address in the form ParsePublishRef reads.
func (r PublishRef) String() string { return r.Ref.String() + ":" + r.Tag }

// ParsePublishRef parses oci://HOST[:PORT]/REPOSITORY:TAG. The tag is required, and a digest is refused: a
// digest names content that exists already, while publishing makes new content and needs a name for it.
// Host and repository follow the rules of [Parse].
func ParsePublishRef(s string) (PublishRef, error) {
	const want = Scheme + "HOST[:PORT]/REPOSITORY:TAG"
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return PublishRef{}, fmt.Errorf("publish address %q: want %s, such as %sregistry.example.com/group/images:debian-12",
			s, want, Scheme)
	}
	host, path, _ := strings.Cut(rest, "/")
	if host == "" || path == "" || strings.HasPrefix(path, ":") {
		return PublishRef{}, fmt.Errorf("publish address %q: want %s, with a repository after the host", s, want)
	}
	if strings.Contains(path, "@") {
		return PublishRef{}, fmt.Errorf("publish address %q names a digest; publishing writes a tag, so name one "+
			"instead (%s): the digest of what was pushed is reported afterwards", s, want)
	}
	// The tag follows the last ':' of the path; a ':' before the first '/' is the host's port.
	i := strings.LastIndex(path, ":")
	if i < 0 {
		return PublishRef{}, fmt.Errorf("publish address %q has no tag: want %s, such as %s%s/%s:latest",
			s, want, Scheme, host, path)
	}
	repo, tag := path[:i], path[i+1:]
	if strings.Contains(repo, ":") {
		return PublishRef{}, fmt.Errorf("publish address %q: bad repository name %q: only the tag follows a ':'", s, repo)
	}
	if err := (registry.Reference{Reference: tag}).ValidateReferenceAsTag(); err != nil {
		return PublishRef{}, fmt.Errorf("publish address %q: bad tag %q: a tag is 1 to 128 letters, digits, "+
			"'_', '.' and '-', and does not start with '.' or '-'", s, tag)
	}
	cacheAddr := Scheme + host + "/" + repo
	ref, err := Parse(cacheAddr)
	if err != nil {
		// Parse speaks of a remote cache; say the same about the publish address.
		msg, _ := strings.CutPrefix(err.Error(), fmt.Sprintf("remote cache %q: ", cacheAddr))
		return PublishRef{}, fmt.Errorf("publish address %q: %s", s, msg)
	}
	return PublishRef{Ref: ref, Tag: tag}, nil
}

// PublishResult says what a publish did.
type PublishResult struct {
	Ref PublishRef
	// Digest is the manifest's digest: Ref's repository @Digest names what was published for good, while
	// the tag may move.
	Digest string
	// Size is the manifest's size plus its config's and layers': what a pull downloads.
	Size int64
	// BytesPushed is what went over the network in blobs; blobs the registry had already are skipped, so a
	// publish repeated with the same files pushes nothing. BlobsPushed and BlobsSkipped count them.
	BytesPushed               int64
	BlobsPushed, BlobsSkipped int64
	// Tagged is false when the tag named this very manifest already, and was left alone.
	Tagged bool
}

// publishBlob is one blob of a publish: its descriptor and how to read it, as often as an upload is tried.
type publishBlob struct {
	desc ocispec.Descriptor
	open func() (io.ReadCloser, error)
}

// bytesBlob is a blob held in memory: only small ones (JSON, checksum lines) are.
func bytesBlob(mediaType string, b []byte) publishBlob {
	return publishBlob{
		desc: content.NewDescriptorFromBytes(mediaType, b),
		open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
	}
}

// fileBlob is a blob read from path when it is uploaded; desc was computed from the same file before.
func fileBlob(desc ocispec.Descriptor, path string) publishBlob {
	return publishBlob{desc: desc, open: func() (io.ReadCloser, error) { return os.Open(path) }}
}

// openPublish connects to ref's registry with the cache's connection code and looks ref's tag up: one
// request that shows refused credentials or a missing permission to read before gigabytes are read or
// compressed.
func openPublish(ctx context.Context, ref PublishRef, opts Options) (*Cache, error) {
	opts.Mode = ReadWrite
	c, err := Open(ctx, ref.Ref, opts)
	if err != nil {
		return nil, err
	}
	if _, err := c.repo.Resolve(ctx, ref.Tag); err != nil && !errors.Is(err, errdef.ErrNotFound) {
		return nil, fmt.Errorf("look up the tag: %w", c.explain(err))
	}
	return c, nil
}

// pushImage uploads the blobs the registry lacks, then the manifest under ref's tag. The tag comes last,
// so that it never names a manifest whose blobs are missing: a publish cut short leaves the tag where it
// was. A tag that names this manifest already is left alone.
func pushImage(ctx context.Context, c *Cache, ref PublishRef, blobs []publishBlob, manifest ocispec.Manifest) (PublishResult, error) {
	res := PublishResult{Ref: ref}
	for _, b := range blobs {
		if err := c.pushBlob(ctx, b.desc, b.open); err != nil {
			return res, fmt.Errorf("blob %s (%s): %w", b.desc.Digest, b.desc.MediaType, c.explain(err))
		}
		res.Size += b.desc.Size
	}
	mb, err := json.Marshal(&manifest)
	if err != nil {
		return res, err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	res.Digest, res.Size = desc.Digest.String(), res.Size+desc.Size
	// Looked up again: another publisher may have moved the tag since openPublish.
	cur, err := c.repo.Resolve(ctx, ref.Tag)
	switch {
	case err == nil && cur.Digest == desc.Digest:
		c.logf("remote: %s names this manifest already", ref)
	case err == nil || errors.Is(err, errdef.ErrNotFound):
		if err := c.repo.PushReference(ctx, desc, bytes.NewReader(mb), ref.Tag); err != nil {
			return res, fmt.Errorf("manifest: %w", c.explain(err))
		}
		res.Tagged = true
	default:
		return res, fmt.Errorf("look up the tag: %w", c.explain(err))
	}
	n := c.Counters()
	res.BytesPushed, res.BlobsPushed, res.BlobsSkipped = n.BytesPushed, n.BlobsPushed, n.BlobsSkipped
	return res, nil
}

// PublishInfo is what a published image says about itself in its manifest's annotations, for people
// browsing the registry and for tools that trace an image back to its build.
type PublishInfo struct {
	// Image is the image block's name, such as "debian-12-base": com.gitlab.imgform.image and the
	// manifest's org.opencontainers.image.title.
	Image string
	// Created is org.opencontainers.image.created. Give the build's time (the manifest's build_time), not
	// the time of publishing, so that publishing the same outputs again makes the same manifest.
	Created time.Time
	// Source and Revision, when set, are org.opencontainers.image.source (the repository of the
	// configuration, such as $CI_PROJECT_URL) and .revision (its commit, such as $CI_COMMIT_SHA).
	Source, Revision string
	// Annotations are added to the manifest's; those above win over them.
	Annotations map[string]string
}

// annotations returns the manifest annotations of info. version is imgform's: it is what made the
// artifact, so it is org.opencontainers.image.version as well as com.gitlab.imgform.version.
func (info PublishInfo) annotations(version string) map[string]string {
	a := maps.Clone(info.Annotations)
	if a == nil {
		a = map[string]string{}
	}
	if version == "" {
		version = "devel"
	}
	a[ocispec.AnnotationCreated] = info.Created.UTC().Format(time.RFC3339)
	a[ocispec.AnnotationVersion] = version
	a[AnnotationVersion] = version
	for k, v := range map[string]string{
		ocispec.AnnotationTitle:    info.Image,
		AnnotationImage:            info.Image,
		ocispec.AnnotationSource:   info.Source,
		ocispec.AnnotationRevision: info.Revision,
	} {
		if v != "" {
			a[k] = v
		}
	}
	return a
}

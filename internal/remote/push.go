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

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"gitlab.com/imgform/imgform/internal/state"
)

// ErrParentConflict is wrapped by [Cache.Push] when the remote holds another build of a parent of the object:
// the object's files (a qcow2 overlay) are unusable over that parent, so pushing them would help no one.
var ErrParentConflict = errors.New("the remote cache holds another build of a parent")

// PushReport says what a push did.
type PushReport struct {
	// Pushed lists the objects uploaded, parents first. Objects the remote held already are not listed.
	Pushed []state.Key
}

// Push uploads obj, and first those of its parents the remote does not hold, so that every entry of the
// remote can be pulled with its chain. annotations are added to obj's manifest (not its parents'); imgform's
// own annotations win over them. An object the remote holds already is left alone: the first push of a key
// wins, and two machines pushing one key at once leave one complete entry either way.
//
// Push holds obj in st while it reads it, so gc cannot remove it meanwhile, and verifies every file's sha256
// as it compresses it: a damaged local object is never published.
func (c *Cache) Push(ctx context.Context, st *state.Store, obj *state.Object, annotations map[string]string) (PushReport, error) {
	var rep PushReport
	if c.opts.Mode == ReadOnly {
		return rep, fmt.Errorf("push %s to %s: %w", obj.Key.Short(), c.ref, ErrReadOnly)
	}
	hold, err := st.Hold(ctx, obj.Key)
	if err != nil {
		return rep, err
	}
	defer func() {
		if herr := hold.Release(); herr != nil {
			c.logf("remote: release hold on %s: %v", obj.Key.Short(), herr)
		}
	}()
	chain, err := localChain(st, obj)
	if err != nil {
		return rep, fmt.Errorf("push %s: %w", obj.Key.Short(), err)
	}
	for i, o := range chain { // root first
		e, ok, err := c.Stat(ctx, o.Key)
		if errors.Is(err, state.ErrCorrupt) || errors.Is(err, ErrNotStep) {
			// A damaged entry would stay a miss for everyone until retention removes it: replace it.
			c.logf("remote: %s: replacing a bad entry: %v", o.Key.Short(), err)
			ok, err = false, nil
		}
		if err != nil {
			return rep, fmt.Errorf("push %s: %w", obj.Key.Short(), err)
		}
		if ok {
			if o != obj && e.Meta.SHA256 != o.SHA256 {
				return rep, fmt.Errorf("push %s to %s: parent %s there has sha256 %s, %s was built on %s: %w",
					obj.Key.Short(), c.ref, o.Key.Short(), e.Meta.SHA256, chain[i+1].Key.Short(), o.SHA256, ErrParentConflict)
			}
			c.logf("remote: %s: in the remote already", o.Key.Short())
			continue
		}
		var extra map[string]string
		if o == obj {
			extra = annotations
		}
		if err := c.pushObject(ctx, st, o, extra); err != nil {
			return rep, fmt.Errorf("push %s to %s: %w", o.Key.Short(), c.ref, c.explain(err))
		}
		rep.Pushed = append(rep.Pushed, o.Key)
	}
	return rep, nil
}

// localChain returns obj and its parents from st, root first.
func localChain(st *state.Store, obj *state.Object) ([]*state.Object, error) {
	chain := []*state.Object{obj}
	for o := obj; !o.Parent.IsZero(); {
		if len(chain) > maxChain {
			return nil, fmt.Errorf("parent chain longer than %d", maxChain)
		}
		p, ok, err := st.Lookup(o.Parent)
		if err != nil || !ok {
			return nil, errors.Join(fmt.Errorf("parent %s is not usable in the local store", o.Parent.Short()), err)
		}
		chain = append(chain, p)
		o = p
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain, nil
}

// maxChain bounds how many parents a push or pull follows, as the store does.
const maxChain = 1000

// pushObject uploads the blobs of o and then its manifest under its tag; the tag appears only once every
// blob is there, so a push cut short leaves no entry (and its blobs speed up the next attempt).
func (c *Cache) pushObject(ctx context.Context, st *state.Store, o *state.Object, extra map[string]string) error {
	wd, err := st.NewWorkDir("push-")
	if err != nil {
		return err
	}
	defer func() {
		if err := wd.Remove(); err != nil {
			c.logf("remote: remove %s: %v", wd.Path(), err)
		}
	}()
	layers := make([]layerFile, 0, len(o.Files))
	for _, f := range o.Files {
		desc, err := c.pushFile(ctx, wd.Path(), o, f)
		if err != nil {
			return fmt.Errorf("file %q: %w", f.Name, err)
		}
		fi, err := os.Stat(o.Path(f.Name))
		if err != nil {
			return err
		}
		layers = append(layers, layerFile{desc: desc, file: f, mode: uint32(fi.Mode().Perm())})
	}
	metaJSON, err := json.Marshal(&o.Meta)
	if err != nil {
		return err
	}
	config := content.NewDescriptorFromBytes(MediaTypeMeta, metaJSON)
	if err := c.pushBlob(ctx, config, func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(metaJSON)), nil
	}); err != nil {
		return fmt.Errorf("meta.json: %w", err)
	}
	annotations := maps.Clone(extra)
	manifest, err := buildManifest(&o.Meta, metaJSON, layers, annotations, c.opts.Version)
	if err != nil {
		return err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, manifest)
	if err := c.repo.PushReference(ctx, desc, bytes.NewReader(manifest), Tag(o.Key)); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	c.logf("remote: %s: pushed (%d files)", o.Key.Short(), len(o.Files))
	return nil
}

// pushFile compresses one file of o into a temp file in dir, which gives the digest and size the registry
// wants before the upload, then uploads it unless the registry has it already. Files are streamed, never
// held in memory: layers are hundreds of MB.
func (c *Cache) pushFile(ctx context.Context, dir string, o *state.Object, f state.FileSum) (ocispec.Descriptor, error) {
	tmp, err := os.CreateTemp(dir, "blob-")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer func() {
		_ = tmp.Close() // read-only by then, or failed already
		_ = os.Remove(tmp.Name())
	}()
	desc, err := compressFile(ctx, o, f.Name, tmp)
	if err != nil {
		return desc, err
	}
	if err := tmp.Close(); err != nil {
		return desc, err
	}
	return desc, c.pushBlob(ctx, desc, func() (io.ReadCloser, error) { return os.Open(tmp.Name()) })
}

// compressFile writes the zstd-compressed content of o's file name to w and returns its descriptor. The
// object's verifying reader fails at the end when the file does not match its sha256.
func compressFile(ctx context.Context, o *state.Object, name string, w io.Writer) (ocispec.Descriptor, error) {
	r, err := o.Open(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer r.Close()
	digester := digest.Canonical.Digester()
	counted := &countingWriter{w: io.MultiWriter(w, digester.Hash())}
	enc, err := zstd.NewWriter(counted, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if _, err := io.Copy(enc, ctxReader{ctx: ctx, r: r}); err != nil {
		return ocispec.Descriptor{}, errors.Join(err, enc.Close())
	}
	if err := enc.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: MediaTypeFile, Digest: digester.Digest(), Size: counted.n}, nil
}

// pushBlob uploads a blob unless the registry has it (a retried push, a file shared with another object).
func (c *Cache) pushBlob(ctx context.Context, desc ocispec.Descriptor, open func() (io.ReadCloser, error)) error {
	blobs := c.repo.Blobs()
	exists, err := blobs.Exists(ctx, desc)
	if err != nil {
		return err
	}
	if exists {
		c.blobsSkipped.Add(1)
		c.logf("remote: blob %s: in the registry already", desc.Digest)
		return nil
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	err = blobs.Push(ctx, desc, &countingReader{r: rc, n: &c.pushed})
	if errors.Is(err, errdef.ErrAlreadyExists) {
		err = nil
	}
	if err == nil {
		c.blobsPushed.Add(1)
	}
	return err
}

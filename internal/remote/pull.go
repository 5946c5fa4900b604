package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"oras.land/oras-go/v2/content"

	"gitlab.com/imgform/imgform/internal/fsutil"
	"gitlab.com/imgform/imgform/internal/state"
)

// ErrNotFound is wrapped by [Cache.Pull] when the remote does not hold the key.
var ErrNotFound = errors.New("not in the remote cache")

// maxWindow bounds the zstd window a blob may ask for, which is memory the decoder allocates: the encoder's
// default window is 8 MiB, and a hostile blob must not make imgform allocate GBs.
const maxWindow = 64 << 20

// Pull downloads the object of key into st and returns it, first pulling those of its parents st lacks. An
// object st holds already is returned without a download. Every blob is checked against its digest while it
// streams, decompressed straight into the store's temp folder and committed through [state.Store.Import],
// which checks each file's sha256 again: a corrupted blob is an error wrapping state.ErrCorrupt and
// leaves nothing in the store.
//
// Concurrent pulls and builds of one key are harmless (the first commit wins); take st.LockKey first to
// avoid downloading twice.
func (c *Cache) Pull(ctx context.Context, st *state.Store, key state.Key) (*state.Object, error) {
	return c.pull(ctx, st, key, 0)
}

func (c *Cache) pull(ctx context.Context, st *state.Store, key state.Key, depth int) (*state.Object, error) {
	if obj, ok, err := st.Lookup(key); err != nil || ok {
		return obj, err
	}
	if depth > maxChain {
		return nil, fmt.Errorf("pull %s: parent chain longer than %d", key.Short(), maxChain)
	}
	e, ok, err := c.Stat(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", key.Short(), err)
	}
	if !ok {
		return nil, fmt.Errorf("pull %s from %s: %w", key.Short(), c.ref, ErrNotFound)
	}
	if p := e.Meta.Parent; !p.IsZero() {
		if _, err := c.pull(ctx, st, p, depth+1); err != nil {
			return nil, fmt.Errorf("pull %s: parent: %w", key.Short(), err)
		}
	}
	layers, err := e.layers()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", key.Short(), err)
	}
	obj, err := st.Import(key, e.Meta, func(dir string) error {
		for _, l := range layers {
			if err := c.fetchFile(ctx, l, dir); err != nil {
				return fmt.Errorf("file %q: %w", l.file.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pull %s from %s: %w", key.Short(), c.ref, c.explain(err))
	}
	c.logf("remote: %s: pulled (%d bytes compressed)", key.Short(), e.Size)
	return obj, nil
}

// fetchFile downloads one layer and decompresses it into dir. It fails with an error wrapping
// state.ErrCorrupt when the blob does not match its digest or does not decode to the file's size; a failed
// download is returned as it is.
func (c *Cache) fetchFile(ctx context.Context, l layerFile, dir string) error {
	rc, err := c.repo.Blobs().Fetch(ctx, l.desc)
	if err != nil {
		return err
	}
	defer rc.Close()
	src := &sourceReader{r: &countingReader{r: rc, n: &c.pulled}}
	verify := content.NewVerifyReader(src, l.desc)
	dec, err := zstd.NewReader(verify, zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		return err
	}
	defer dec.Close()

	// Write access only while the store's Import has not sealed it; read bits as on the pushing machine.
	perm := os.FileMode(l.mode)&0o555 | 0o200
	f, err := os.OpenFile(filepath.Join(dir, l.file.Name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	// One byte more than the file has shows a blob that decompresses to more, without writing it all.
	out := &sinkWriter{w: f}
	n, err := io.Copy(out, io.LimitReader(dec, l.file.Size+1))
	if cerr := f.Close(); out.err == nil {
		out.err = cerr
	}
	switch {
	case src.err != nil:
		return src.err
	case out.err != nil:
		return out.err
	case err != nil:
		return fmt.Errorf("blob %s: %w: %w", l.desc.Digest, err, state.ErrCorrupt)
	case n > l.file.Size:
		return fmt.Errorf("blob %s decompresses to more than the %d bytes of the file: %w", l.desc.Digest,
			l.file.Size, state.ErrCorrupt)
	}
	// The decoder may stop at the end of the last frame; what follows must still be read to verify the digest.
	if _, err := io.Copy(io.Discard, verify); err != nil && src.err == nil {
		return fmt.Errorf("blob %s: %w", l.desc.Digest, corruptIfMismatch(err))
	}
	if src.err != nil {
		return src.err
	}
	if err := verify.Verify(); err != nil {
		return fmt.Errorf("blob %s: %w: %w", l.desc.Digest, err, state.ErrCorrupt)
	}
	return nil
}

// PullFile downloads the one file name of the remote object e (from [Cache.Stat] or [Cache.StatMany]) into
// dir (which must not hold it yet), without the rest of the object: a step's downloaded files on a runner
// that needs nothing else of its layer. The blob is checked against its digest while it streams, and the
// file against the sha256 meta.json gives.
func (c *Cache) PullFile(ctx context.Context, e Entry, name, dir string) error {
	key := e.Key
	layers, err := e.layers()
	if err != nil {
		return fmt.Errorf("pull %s: %w", key.Short(), err)
	}
	for _, l := range layers {
		if l.file.Name != name {
			continue
		}
		if err := c.fetchFile(ctx, l, dir); err != nil {
			return fmt.Errorf("pull %s, file %q: %w", key.Short(), name, c.explain(err))
		}
		sum, _, err := fsutil.HashFile(ctx, filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if sum != l.file.SHA256 {
			return fmt.Errorf("pull %s, file %q: sha256 %s, meta.json says %s: %w", key.Short(), name, sum, l.file.SHA256, state.ErrCorrupt)
		}
		c.logf("remote: %s: pulled file %q", key.Short(), name)
		return nil
	}
	return fmt.Errorf("pull %s: the object has no file %q", key.Short(), name)
}

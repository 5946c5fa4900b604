package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"gitlab.com/imgform/imgform/internal/state"
)

// Stat looks key up. A key the remote does not hold is (zero, false, nil), and so is an entry written by an
// imgform of another metadata format (logged). An entry that is damaged or not an imgform step is an error
// (wrapping state.ErrCorrupt or ErrNotStep): callers treat it as a miss and may report it.
func (c *Cache) Stat(ctx context.Context, key state.Key) (Entry, bool, error) {
	e, err := c.stat(ctx, key)
	switch {
	case errors.Is(err, errdef.ErrNotFound):
		return Entry{}, false, nil
	case errors.Is(err, state.ErrFormatVersion):
		c.logf("remote: %s: ignored: %v", key.Short(), err)
		return Entry{}, false, nil
	case err != nil:
		return Entry{}, false, fmt.Errorf("remote cache %s: look up %s: %w", c.ref, key.Short(), c.explain(err))
	}
	return *e, true, nil
}

// stat fetches and checks the manifest tagged for key.
func (c *Cache) stat(ctx context.Context, key state.Key) (*Entry, error) {
	desc, rc, err := c.repo.FetchReference(ctx, Tag(key))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("tag %s holds a %q: %w", Tag(key), desc.MediaType, ErrNotStep)
	}
	if desc.Size < 0 || desc.Size > maxManifestSize {
		return nil, fmt.Errorf("manifest of %d bytes, more than the %d imgform reads: %w", desc.Size, maxManifestSize,
			state.ErrCorrupt)
	}
	b, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, corruptIfMismatch(fmt.Errorf("manifest: %w", err))
	}
	return parseManifest(key, desc, b, func(config ocispec.Descriptor) ([]byte, error) {
		rc, err := c.repo.Fetch(ctx, config)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		b, err := content.ReadAll(rc, config)
		if err != nil {
			return nil, corruptIfMismatch(fmt.Errorf("meta.json: %w", err))
		}
		return b, nil
	})
}

// corruptIfMismatch makes a digest or size mismatch found by oras-go an error wrapping state.ErrCorrupt.
func corruptIfMismatch(err error) error {
	if errors.Is(err, content.ErrMismatchedDigest) || errors.Is(err, content.ErrTrailingData) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", err, state.ErrCorrupt)
	}
	return err
}

// StatMany looks keys up in parallel (Options.Parallel at once) and returns the entries of those the remote
// holds. It fails only when a lookup fails for another reason than a miss, such as refused credentials or
// an unreachable registry; a damaged entry is logged and left out.
func (c *Cache) StatMany(ctx context.Context, keys []state.Key) (map[state.Key]Entry, error) {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b state.Key) int { return slices.Compare(a[:], b[:]) })
	keys = slices.Compact(keys)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		found = map[state.Key]Entry{}
		errs  []error
		wg    sync.WaitGroup
		slots = make(chan struct{}, c.opts.Parallel)
	)
	for _, key := range keys {
		slots <- struct{}{}
		if ctx.Err() != nil {
			<-slots
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			e, ok, err := c.Stat(ctx, key)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, state.ErrCorrupt) || errors.Is(err, ErrNotStep):
				c.logf("remote: %s: ignored: %v", key.Short(), err)
			case err != nil:
				if len(errs) == 0 {
					errs = append(errs, err)
				}
				cancel() // the next lookups would fail the same way
			case ok:
				found[key] = e
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return found, nil
}

// List returns every entry of the remote cache, for `imgform cache ls -remote`. Tags that are not the cache's
// are skipped; damaged entries are logged and skipped.
func (c *Cache) List(ctx context.Context) ([]Entry, error) {
	var keys []state.Key
	err := c.repo.Tags(ctx, "", func(tags []string) error {
		for _, t := range tags {
			if k, ok := keyOfTag(t); ok {
				keys = append(keys, k)
			}
		}
		return nil
	})
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound {
		return nil, nil // no repository yet: nothing was pushed
	}
	if err != nil {
		return nil, fmt.Errorf("remote cache %s: list tags: %w", c.ref, c.explain(err))
	}
	found, err := c.StatMany(ctx, keys)
	if err != nil {
		return nil, err
	}
	entries := make([]Entry, 0, len(found))
	for _, e := range found {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b Entry) int { return slices.Compare(a.Key[:], b.Key[:]) })
	return entries, nil
}

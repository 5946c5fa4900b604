package state

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// Hold is a set of shared "in use" locks on keys. While a Hold exists, gc and verify leave those objects
// (and the parent layers they build on) alone. Many processes may hold the same key.
type Hold struct {
	mu    sync.Mutex
	keys  []Key
	files []*os.File
}

// Hold takes shared in-use locks on keys, which need not exist yet. An apply should hold every key of its
// plan before it looks any of them up, and release them at the end: otherwise gc could remove an object
// between the lookup and its use. Holding a layer protects its parents too, because gc removes a parent
// only together with its children.
//
// It waits (until ctx is done) only while gc or verify is removing one of the objects, which is brief.
func (s *Store) Hold(ctx context.Context, keys ...Key) (*Hold, error) {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b Key) int { return slices.Compare(a[:], b[:]) })
	keys = slices.Compact(keys)
	h := &Hold{}
	for _, k := range keys {
		if k.IsZero() {
			return nil, errors.Join(errors.New("hold: zero key"), h.Release())
		}
		f, err := s.acquire(ctx, s.useLockPath(k), "object "+k.Short()+" (in use)", unix.LOCK_SH, LockOptions{})
		if err != nil {
			return nil, errors.Join(err, h.Release())
		}
		h.keys = append(h.keys, k)
		h.files = append(h.files, f)
	}
	return h, nil
}

// Keys returns the held keys, sorted.
func (h *Hold) Keys() []Key {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.keys)
}

// Release releases every lock of the hold. Releasing twice is a no-op.
func (h *Hold) Release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, f := range h.files {
		errs = append(errs, f.Close())
	}
	h.keys, h.files = nil, nil
	return errors.Join(errs...)
}

package state

import (
	"context"
	"errors"
)

// GetOrBuild returns the object under key, running build to produce it when it is missing. Concurrent
// callers in this and other processes produce it once: the others wait on the key's lock (reporting
// through opts.OnEvent) and then share the result. built reports whether this call produced it.
//
// build writes the object's files into w.Dir(); it must not call Commit or Abort. When build fails, the
// partial object is discarded and its error returned.
func (s *Store) GetOrBuild(ctx context.Context, key Key, info Info, opts LockOptions,
	build func(ctx context.Context, w *Writer) error) (obj *Object, built bool, err error) {
	if obj, ok, err := s.Lookup(key); err != nil || ok {
		return obj, false, err
	}
	lock, err := s.LockKey(ctx, key, opts)
	if err != nil {
		return nil, false, err
	}
	defer func() {
		if uerr := lock.Unlock(); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	// Whoever held the lock before us has most likely just produced the object.
	if obj, ok, err := s.Lookup(key); err != nil || ok {
		return obj, false, err
	}
	w, err := s.Begin(key, info)
	if err != nil {
		return nil, false, err
	}
	if err := build(ctx, w); err != nil {
		return nil, false, errors.Join(err, w.Abort())
	}
	obj, err = w.Commit()
	if err != nil {
		return nil, false, err
	}
	return obj, true, nil
}

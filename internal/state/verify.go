package state

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// Verify re-hashes every file of obj and compares it with the metadata. Its error wraps [ErrCorrupt] when
// the content differs; other errors (such as a file that cannot be read) are returned as they are. It can
// take long for big disks, so ctx can stop it.
func (s *Store) Verify(ctx context.Context, obj *Object) error {
	return s.VerifyExcept(ctx, obj)
}

// VerifyExcept is Verify without the files named in skip: files whose reader checks them (Object.Open) as
// they are used, which a check before use would read twice.
func (s *Store) VerifyExcept(ctx context.Context, obj *Object, skip ...string) error {
	for _, want := range obj.Files {
		if slices.Contains(skip, want.Name) {
			continue
		}
		sum, size, err := fsutil.HashFile(ctx, obj.Path(want.Name))
		if err != nil {
			return fmt.Errorf("verify %s file %q: %w", obj.Key.Short(), want.Name, err)
		}
		if size != want.Size || sum != want.SHA256 {
			return fmt.Errorf("verify %s file %q: %d bytes with sha256 %s, want %d bytes with sha256 %s: %w",
				obj.Key.Short(), want.Name, size, sum, want.Size, want.SHA256, ErrCorrupt)
		}
	}
	return nil
}

// VerifyOptions says what [Store.VerifyAll] does with bad objects.
type VerifyOptions struct {
	// Remove removes bad objects (and the layers built on them, which are unusable without them), except
	// those held by a running apply.
	Remove bool
	// OnLockEvent, when set, reports waiting for another gc or verify run.
	OnLockEvent func(LockEvent)
}

// BadObject is an object that failed verification.
type BadObject struct {
	Info ObjectInfo
	Err  error
}

// VerifyReport says what [Store.VerifyAll] found.
type VerifyReport struct {
	// Checked counts the objects examined.
	Checked int
	// Bad lists the objects that are damaged (see ObjectInfo.Problem) or whose content does not match
	// its sha256, in key order.
	Bad []BadObject
	// Removed lists what was removed when asked to.
	Removed []Removal
	// Held lists objects that were not removed because a running apply holds them or a layer built on them.
	Held []Key
}

// VerifyAll re-hashes every object against its metadata and reports the bad ones, removing them when
// opts.Remove is set. Like gc it runs alone among maintenance runs and never removes held objects.
func (s *Store) VerifyAll(ctx context.Context, opts VerifyOptions) (rep VerifyReport, err error) {
	lock, err := s.lockMaintenance(ctx, "cache verify", opts.OnLockEvent)
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, lock.Unlock()) }()

	sc, err := s.scanObjects()
	if err != nil {
		return rep, err
	}
	nodes := make([]*node, 0, len(sc.nodes))
	for _, n := range sc.nodes {
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b *node) int { return slices.Compare(a.info.Key[:], b.info.Key[:]) })

	var bad []*node
	for _, n := range nodes {
		rep.Checked++
		var verr error
		if n.info.Problem != "" {
			verr = fmt.Errorf("%s: %w", n.info.Problem, ErrCorrupt)
		} else {
			verr = s.Verify(ctx, &Object{Meta: *n.meta, dir: n.dir})
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		if verr != nil {
			rep.Bad = append(rep.Bad, BadObject{Info: n.info, Err: verr})
			bad = append(bad, n)
		}
	}
	if !opts.Remove {
		return rep, nil
	}
	rm := &remover{s: s}
	// Deepest first, so that a held layer does not keep its damaged siblings.
	slices.SortStableFunc(bad, func(a, b *node) int { return b.depth - a.depth })
	for _, n := range bad {
		if n.removed {
			continue
		}
		if err := rm.remove(ctx, n, "failed verification"); err != nil {
			rep.Removed, rep.Held = rm.removed, rm.held
			return rep, err
		}
	}
	rep.Removed, rep.Held = rm.removed, rm.held
	return rep, nil
}

package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// GCOptions says what [Store.GC] removes besides damaged objects and leftovers of crashed writes, which it
// always removes.
type GCOptions struct {
	// OlderThan removes objects not used for longer than this (0: no age limit). A layer counts as used
	// when anything built on it was used, so a chain is never cut in the middle.
	OlderThan time.Duration
	// MaxSize then removes the least recently used objects until the total size is at most MaxSize bytes
	// (0: no size limit).
	MaxSize int64
	// DryRun reports what would be removed without removing anything.
	DryRun bool
	// OnLockEvent, when set, reports waiting for another gc or verify run.
	OnLockEvent func(LockEvent)
}

// Removal is an object removed by gc or verify, and why.
type Removal struct {
	Info   ObjectInfo
	Reason string
}

// GCReport says what [Store.GC] did.
type GCReport struct {
	Removed []Removal
	// Freed is the total size of the removed objects.
	Freed int64
	// RemovedTemp lists the folders of interrupted writes and removals that were removed.
	RemovedTemp []string
	// Held lists held objects (see [Store.Hold]) that kept an object from removal: the object itself or a
	// layer built on it.
	Held []Key
	// Writing counts writes in progress, whose temp folders were left alone.
	Writing int
	// Kept and KeptSize count the objects left and their total size.
	Kept     int
	KeptSize int64
}

// GC removes objects from the store: damaged ones, then those unused for longer than opts.OlderThan, then
// the least recently used until the store is under opts.MaxSize. It also removes the temp folders of
// crashed writes. It never removes an object held by a running apply, nor a parent layer before its
// children, nor the temp folder of a write in progress. Only one gc or verify runs at a time; another
// waits for it (until ctx is done).
func (s *Store) GC(ctx context.Context, opts GCOptions) (rep GCReport, err error) {
	if opts.OlderThan < 0 || opts.MaxSize < 0 {
		return rep, errors.New("gc: negative age or size limit")
	}
	lock, err := s.lockMaintenance(ctx, "cache gc", opts.OnLockEvent)
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, lock.Unlock()) }()

	sc, err := s.scanObjects()
	if err != nil {
		return rep, err
	}
	if err := s.removeLeftovers(ctx, sc, opts.DryRun, &rep); err != nil {
		return rep, err
	}

	rm := &remover{s: s, dryRun: opts.DryRun}
	var total int64
	for _, n := range sc.nodes {
		total += n.info.Size
	}
	byDepth := sc.sorted()
	// Deepest first, so each removal takes one layer and a held child keeps only its own parents.
	slices.SortStableFunc(byDepth, func(a, b *node) int { return b.depth - a.depth })

	for _, n := range byDepth {
		if n.info.Problem != "" && !n.removed {
			if err := rm.remove(ctx, n, "damaged: "+n.info.Problem); err != nil {
				return rm.report(rep, total), err
			}
		}
	}
	if opts.OlderThan > 0 {
		cutoff := s.now().Add(-opts.OlderThan)
		for _, n := range byDepth {
			if !n.removed && n.lastUsed.Before(cutoff) {
				reason := fmt.Sprintf("unused since %s", n.lastUsed.Format(time.DateTime))
				if err := rm.remove(ctx, n, reason); err != nil {
					return rm.report(rep, total), err
				}
			}
		}
	}
	if opts.MaxSize > 0 {
		lru := slices.Clone(byDepth)
		// Least recently used first; on a tie (a layer and the child that was its last use) the child.
		slices.SortStableFunc(lru, func(a, b *node) int { return a.lastUsed.Compare(b.lastUsed) })
		for _, n := range lru {
			if total-rm.freed <= opts.MaxSize {
				break
			}
			if !n.removed {
				reason := fmt.Sprintf("over the size limit, last used %s", n.lastUsed.Format(time.DateTime))
				if err := rm.remove(ctx, n, reason); err != nil {
					return rm.report(rep, total), err
				}
			}
		}
	}
	rep = rm.report(rep, total)
	rep.Kept = len(sc.nodes) - len(rep.Removed)
	if !opts.DryRun {
		if err := s.removeStaleLockFiles(ctx); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// removeLeftovers removes the temp folders of crashed writes and of interrupted removals. A write in
// progress keeps its temp folder flocked, so a folder that can be locked belongs to a dead writer.
func (s *Store) removeLeftovers(ctx context.Context, sc *scan, dryRun bool, rep *GCReport) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.removeDead(sc, dryRun, rep)
}

// removeDead removes the temp folders, trash and work folders nobody holds.
func (s *Store) removeDead(sc *scan, dryRun bool, rep *GCReport) error {
	work, err := s.leftoverWorkDirs()
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	for _, dir := range append(slices.Clone(sc.temps), work...) {
		d, err := tryLockDir(dir, unix.LOCK_EX)
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		if d == nil {
			if _, err := os.Lstat(dir); err == nil {
				rep.Writing++
			}
			continue
		}
		if !dryRun {
			err = os.RemoveAll(dir)
		}
		if err = errors.Join(err, d.Close()); err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		rep.RemovedTemp = append(rep.RemovedTemp, dir)
	}
	for _, dir := range sc.trash {
		if !dryRun {
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("gc: %w", err)
			}
		}
		rep.RemovedTemp = append(rep.RemovedTemp, dir)
	}
	return nil
}

// removeStaleLockFiles removes lock files of keys without an object that nobody holds, so that the locks
// folder does not grow with every key ever built or held. Lockers cope with the unlink: see tryLockFile.
func (s *Store) removeStaleLockFiles(ctx context.Context) error {
	shards, err := os.ReadDir(s.locksDir())
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	for _, sh := range shards {
		if !sh.IsDir() {
			continue
		}
		dir := filepath.Join(s.locksDir(), sh.Name())
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			name := e.Name()
			hexKey, ok := strings.CutSuffix(name, ".use")
			if !ok {
				hexKey, ok = strings.CutSuffix(name, ".build")
			}
			key, err := ParseKey(hexKey)
			if !ok || err != nil {
				continue
			}
			if _, err := os.Lstat(s.objectDir(key)); err == nil {
				continue
			}
			if err := removeLockFile(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("gc: %w", err)
			}
		}
	}
	return nil
}

// removeLockFile unlinks a lock file if nobody holds it.
func removeLockFile(path string) error {
	f, err := tryLockFile(path, unix.LOCK_EX)
	if err != nil || f == nil {
		return err
	}
	return errors.Join(fsutil.RemoveIfExists(path), f.Close())
}

// remover removes objects for gc and verify, honouring holds.
type remover struct {
	s       *Store
	dryRun  bool
	removed []Removal
	held    []Key
	freed   int64
}

// remove removes n and everything built on it, unless one of them is held by a running apply.
func (r *remover) remove(ctx context.Context, n *node, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sub := n.subtree()
	locks := make([]*os.File, 0, len(sub))
	release := func() error {
		var errs []error
		for _, f := range locks {
			errs = append(errs, f.Close())
		}
		return errors.Join(errs...)
	}
	for _, m := range sub {
		f, err := tryLockFile(r.s.useLockPath(m.info.Key), unix.LOCK_EX)
		if err != nil {
			return errors.Join(fmt.Errorf("remove %s: %w", m.info.Key.Short(), err), release())
		}
		if f == nil {
			if !slices.Contains(r.held, m.info.Key) {
				r.held = append(r.held, m.info.Key)
			}
			r.s.logf("state: keeping %s: held by a running apply", m.info.Key.Short())
			return release()
		}
		locks = append(locks, f)
	}
	for _, m := range sub {
		why := reason
		if m != n {
			why = fmt.Sprintf("built on %s, which is removed (%s)", n.info.Key.Short(), reason)
		}
		if !r.dryRun {
			if err := r.s.discard(m.info.Key); err != nil {
				return errors.Join(fmt.Errorf("remove %s: %w", m.info.Key.Short(), err), release())
			}
			// We hold the in-use lock, so nobody else does: its file can go with the object.
			if err := fsutil.RemoveIfExists(r.s.useLockPath(m.info.Key)); err != nil {
				return errors.Join(err, release())
			}
		}
		m.removed = true
		r.freed += m.info.Size
		r.removed = append(r.removed, Removal{Info: m.info, Reason: why})
		r.s.logf("state: removed %s: %s", m.info.Key.Short(), why)
	}
	return release()
}

func (r *remover) report(rep GCReport, total int64) GCReport {
	rep.Removed = r.removed
	rep.Held = r.held
	rep.Freed = r.freed
	rep.KeptSize = total - r.freed
	return rep
}

package engine

import (
	"context"
	"errors"
	"fmt"

	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// runGuest runs the guest steps of one image that are to run, in one session of Machines.
func (a *applier) runGuest(ctx context.Context, steps []*step.Step) (err error) {
	finished := map[*step.Step]bool{}
	defer func() {
		// Whatever did not finish failed (the step that was running) or never started.
		failedOne := false
		for _, s := range steps {
			if finished[s] {
				continue
			}
			switch {
			// A step that failed before the cancel (apply -on-error=keep waits for Ctrl-C) failed.
			case ctx.Err() != nil && (err == nil || errors.Is(err, ctx.Err())):
				a.finish(s, StatusCanceled, ctx.Err())
			case !failedOne && err != nil:
				failedOne = true
				a.finish(s, StatusFailed, err)
			default:
				a.finish(s, StatusSkipped, errors.New("not run: an earlier step of the image failed"))
			}
		}
	}()
	if a.e.Machines == nil {
		return errors.New("this imgform has no VM runner, so boot, provision and cleanup steps cannot run")
	}

	// Another apply of the same configuration may be building these layers right now: wait for it, then
	// take over only what it did not finish.
	for _, s := range steps {
		lock, err := a.e.Store.LockKey(ctx, s.Key, a.lockOptions(fmt.Sprintf("build of image %s", s.Image.Name)))
		if err != nil {
			return err
		}
		defer func() { _ = lock.Unlock() }()
	}
	for len(steps) > 0 {
		if _, ok, err := a.e.Store.Lookup(steps[0].Key); err != nil {
			return err
		} else if !ok {
			break
		}
		a.start(steps[0])
		a.finish(steps[0], StatusCached, nil)
		finished[steps[0]] = true
		steps = steps[1:]
	}
	if len(steps) == 0 {
		return nil
	}

	first := steps[0]
	img := first.Image
	baseObj, err := a.lookup(first.Parent, fmt.Sprintf("the disk %s starts from (%s)", first.Label(), first.Parent.Addr.ID()))
	if err != nil {
		return err
	}
	base := step.Disk{Path: baseObj.Path(step.LayerFile), Format: "qcow2"}
	if dk, ok := first.Parent.Kind.(step.DiskKind); ok {
		if base, err = dk.Disk(baseObj); err != nil {
			return err
		}
	}
	uses := []*state.Object{}
	for _, u := range first.Uses {
		obj, err := a.lookup(u, fmt.Sprintf("the %s of image %q", u.Label(), img.Name))
		if err != nil {
			return err
		}
		uses = append(uses, obj)
	}
	// Check what this session builds on before using it: a damaged cache entry must not end up in an image.
	for _, obj := range append([]*state.Object{baseObj}, uses...) {
		if err := a.verifyChain(ctx, obj); err != nil {
			return fmt.Errorf("a cached result image %q builds on is damaged (%w); run imgform cache verify -remove and apply again", img.Name, err)
		}
	}
	work, err := a.e.Store.NewWorkDir("vm-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, work.Remove()) }()

	// Layers begun and not yet committed, by key: the next layer of a running VM is begun before the one
	// below it is committed (see SessionJob.Begin).
	open := map[state.Key]*state.Writer{}
	job := &step.SessionJob{
		Image: img, ConfigDir: a.cfg.Dir, Base: base, BaseObject: baseObj, Uses: uses, Root: a.e.Store.Dir(), WorkDir: work.Path(),
		Steps: steps, Message: a.warnOnce, Redact: a.cfg.Redact, Shared: a.p.shared,
		Info:        func(text string) { a.e.hooks().Message(LevelInfo, text) },
		KeepOnError: a.keepOnError(),
		Begin: func(s *step.Step) (*state.Writer, error) {
			info := state.Info{Kind: s.Addr.Kind, Image: img.Name, Step: s.Addr.ID(), Parent: s.Parent.Key}
			var w *state.Writer
			var err error
			if parent := open[info.Parent]; parent != nil {
				w, err = a.e.Store.BeginAfter(s.Key, info, parent)
			} else {
				w, err = a.e.Store.Begin(s.Key, info)
			}
			if err != nil {
				return nil, err
			}
			open[s.Key] = w
			return w, nil
		},
		Commit: func(s *step.Step, w *state.Writer) error {
			delete(open, s.Key)
			if _, err := w.Commit(); err != nil {
				return err
			}
			finished[s] = true
			a.finish(s, StatusDone, nil)
			return nil
		},
		Started: a.start,
		Done:    a.done,
		Output: func(s *step.Step, line string) {
			a.e.hooks().StepOutput(a.p.rows[s], a.cfg.Redact(line))
		},
		Progress: func(s *step.Step, phase string, done, total int64) {
			a.e.hooks().StepProgress(a.p.rows[s], phase, done, total)
		},
	}
	return a.e.Machines.RunSession(ctx, job)
}

// lookup returns the stored result of a step a run needs; what names it in the error.
func (a *applier) lookup(s *step.Step, what string) (*state.Object, error) {
	obj, ok, err := a.e.Store.Lookup(s.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s is not in the store", what)
	}
	return obj, nil
}

// keepOnError is the session's KeepOnError for apply -on-error=keep: it says how to log in to the failed
// build's VM and waits for the apply to be cancelled (Ctrl-C).
func (a *applier) keepOnError() func(ctx context.Context, failed *step.Step, err error, login string) {
	if !a.e.KeepOnError {
		return nil
	}
	return func(ctx context.Context, failed *step.Step, err error, login string) {
		a.e.hooks().Message(LevelWarn, fmt.Sprintf("%s failed: %v\nThe VM of image %q keeps running as it was at the "+
			"failure (-on-error=keep). Log in with:\n  %s\nPress Ctrl-C to stop it; nothing of the failed step is kept.",
			failed.Label(), a.cfg.Redact(err.Error()), failed.Image.Name, login))
		<-ctx.Done()
	}
}

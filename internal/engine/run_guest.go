package engine

import (
	"context"
	"errors"
	"fmt"
	"os"

	"gitlab.com/imgform/imgform/internal/state"
)

// runGuest runs the disk steps of one image that are to run, in one VM session.
func (a *applier) runGuest(ctx context.Context, steps []*StepPlan) (err error) {
	finished := map[*StepPlan]bool{}
	defer func() {
		// Whatever did not finish failed (the step that was running) or never started.
		failedOne := false
		for _, sp := range steps {
			if finished[sp] {
				continue
			}
			switch {
			case ctx.Err() != nil:
				a.finish(sp, StatusCanceled, ctx.Err())
			case !failedOne && err != nil:
				failedOne = true
				a.finish(sp, StatusFailed, err)
			default:
				a.finish(sp, StatusSkipped, errors.New("not run: an earlier step of the image failed"))
			}
		}
	}()
	if a.e.Guest == nil {
		return errors.New("this imgform has no VM runner, so boot, provision and cleanup steps cannot run")
	}

	// Another apply of the same configuration may be building these layers right now: wait for it, then
	// take over only what it did not finish.
	for _, sp := range steps {
		lock, err := a.e.Store.LockKey(ctx, sp.step.Key, a.lockOptions(fmt.Sprintf("build of image %s", sp.step.Image.Name)))
		if err != nil {
			return err
		}
		defer func() { _ = lock.Unlock() }()
	}
	for len(steps) > 0 {
		if _, ok, err := a.e.Store.Lookup(steps[0].step.Key); err != nil {
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

	first := steps[0].step
	img := first.Image
	baseObj, ok, err := a.e.Store.Lookup(first.Parent.Key)
	if err != nil || !ok {
		return fmt.Errorf("the disk %s starts from (%s) is not in the store: %v", first.Label(), first.Parent.ID, err)
	}
	base := Disk{Path: baseObj.Path(LayerFile), Format: "qcow2"}
	if first.Parent.Kind == KindFetch {
		if base, err = sourceDisk(baseObj); err != nil {
			return err
		}
	}
	seedObj, ok, err := a.e.Store.Lookup(first.Seed.Key)
	if err != nil || !ok {
		return fmt.Errorf("the seed of image %q is not in the store: %v", img.Name, err)
	}
	// Check what this session builds on before using it: a damaged cache entry must not end up in an image.
	for _, obj := range []*state.Object{baseObj, seedObj} {
		if err := a.verifyChain(ctx, obj); err != nil {
			return fmt.Errorf("a cached result image %q builds on is damaged (%w); run imgform cache verify -remove and apply again", img.Name, err)
		}
	}
	keyFrom := baseObj
	if first.Kind == KindBoot {
		keyFrom = seedObj // a new chain: its key is the seed's
	}
	buildKey, err := os.ReadFile(keyFrom.Path(BuildKeyFile))
	if err != nil {
		return fmt.Errorf("the build key of image %q: %w", img.Name, err)
	}

	var hostKeys []byte
	if first.Kind != KindBoot {
		if hostKeys, err = os.ReadFile(baseObj.Path(HostKeysFile)); err != nil {
			return fmt.Errorf("the cached layer %s has no recorded host keys to pin (%w); remove it with imgform cache verify -remove or gc and apply again", first.Parent.ID, err)
		}
	}
	work, err := a.e.Store.NewWorkDir("vm-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, work.Remove()) }()

	// Layers begun and not yet committed, by key: the next layer of a running VM is begun before the one
	// below it is committed (see GuestJob.Begin).
	open := map[state.Key]*state.Writer{}
	job := &GuestJob{
		HostKeys: hostKeys, WorkDir: work.Path(),
		Message: a.warnOnce,
		Image:   img, ConfigDir: a.cfg.Dir, Base: base, Seed: seedObj.Path(SeedFile),
		BuildKey: buildKey, BuildUser: BuildUserName, Steps: steps, Redact: a.cfg.Redact,
		Begin: func(sp *StepPlan) (*state.Writer, error) {
			info := state.Info{Kind: string(sp.step.Kind), Image: img.Name, Step: sp.ID, Parent: sp.step.Parent.Key}
			var w *state.Writer
			if parent := open[info.Parent]; parent != nil {
				w, err = a.e.Store.BeginAfter(sp.step.Key, info, parent)
			} else {
				w, err = a.e.Store.Begin(sp.step.Key, info)
			}
			if err != nil {
				return nil, err
			}
			if err := w.WriteFile(BuildKeyFile, buildKey, 0o600); err != nil {
				return nil, errors.Join(err, w.Abort())
			}
			open[sp.step.Key] = w
			return w, nil
		},
		Commit: func(sp *StepPlan, w *state.Writer) (Disk, error) {
			delete(open, sp.step.Key)
			obj, err := w.Commit()
			if err != nil {
				return Disk{}, err
			}
			finished[sp] = true
			a.finish(sp, StatusDone, nil)
			return Disk{Path: obj.Path(LayerFile), Format: "qcow2"}, nil
		},
		Started: a.start,
		Done:    a.done,
		Output: func(sp *StepPlan, line string) {
			a.e.hooks().StepOutput(sp, a.cfg.Redact(line))
		},
		Progress: func(sp *StepPlan, phase string, done, total int64) {
			a.e.hooks().StepProgress(sp, phase, done, total)
		},
	}
	return a.e.Guest.Run(ctx, job)
}

// warnOnce shows a warning the first time this apply meets it.
func (a *applier) warnOnce(text string) {
	a.mu.Lock()
	seen := a.warned[text]
	if a.warned == nil {
		a.warned = map[string]bool{}
	}
	a.warned[text] = true
	a.mu.Unlock()
	if !seen {
		a.e.hooks().Message(LevelWarn, text)
	}
}

package engine

import (
	"context"
	"fmt"

	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

func (a *applier) lockOptions(purpose string) state.LockOptions {
	return state.LockOptions{Purpose: purpose, OnEvent: a.e.lockEvent}
}

// runHost runs a host step with start and finish events. A step whose result another apply built while
// this one waited for its lock is cached, as the guest steps are in runGuest, not done.
func (a *applier) runHost(ctx context.Context, s *step.Step) error {
	a.start(s)
	hk, ok := s.Kind.(step.HostKind)
	if !ok {
		err := fmt.Errorf("step kind %q has no host run", s.Addr.Kind)
		a.finish(s, StatusFailed, err)
		return err
	}
	row := a.p.rows[s]
	env := &step.Env{
		Config: a.cfg, Store: a.e.Store, Shared: a.p.shared, Machines: a.e.Machines,
		LockOptions: a.lockOptions,
		VerifyChain: a.verifyChain,
		SetData:     func(data any) { a.setData(s, data) },
		Progress:    func(phase string, done, total int64) { a.e.hooks().StepProgress(row, phase, done, total) },
		Output:      func(line string) { a.e.hooks().StepOutput(row, a.cfg.Redact(line)) },
		Warn:        a.warnOnce,
	}
	res, err := hk.Run(ctx, env, s)
	a.mu.Lock()
	r := a.result(s)
	if res.Data != nil {
		r.data = res.Data
	}
	if err == nil && res.Output != nil {
		r.output = res.Output
	}
	a.mu.Unlock()
	switch {
	case err == nil && !res.Built:
		a.finish(s, StatusCached, nil)
	case err == nil:
		a.finish(s, StatusDone, nil)
	case ctx.Err() != nil:
		a.finish(s, StatusCanceled, err)
	default:
		a.finish(s, StatusFailed, err)
	}
	return err
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

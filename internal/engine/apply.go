package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/steps/export"
)

// Result is what an apply did.
type Result struct {
	Plan *Plan
	// Ran counts the steps that ran and succeeded; Failed those that failed; Cached those the plan was to
	// run that another apply built meanwhile (the plan's own cached steps are in Plan.Cached).
	Ran, Failed, Cached int
	// Outputs are the files written or kept, per image.
	Outputs []OutputResult
}

// OutputResult is one output file of an image.
// Its JSON form is the apply_finished event's outputs (docs/plan-json.md).
type OutputResult struct {
	Image   string `json:"image"`
	Name    string `json:"name"`
	Path    string `json:"path"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Written bool   `json:"written"` // false when the file from the last apply was still right
	// Verification is the image's test result: passed, failed, skipped, not run or disabled (see
	// steps/export.Verification).
	Verification string `json:"verification"`
}

// Apply plans and then runs what is missing, in dependency order, independent steps in parallel. It writes
// the record of this apply even when a step fails, so that the next plan explains what is left; the steps
// that finished stay in the store and the next apply resumes from them.
func (e *Engine) Apply(ctx context.Context, cfg *config.Config) (*Result, error) {
	lock, err := e.Store.LockRecord(ctx, recordID(cfg), state.LockOptions{Purpose: "apply of " + cfg.Dir, OnEvent: e.lockEvent})
	if err != nil {
		return nil, err
	}
	defer func() { _ = lock.Unlock() }()

	// A killed apply leaves its half-written layers and VM work folder behind; clear them before this one
	// adds its own. What another apply is writing is flocked and stays.
	if removed, err := e.Store.SweepLeftovers(); err != nil {
		e.hooks().Message(LevelWarn, fmt.Sprintf("could not remove what an interrupted apply left in the cache: %v", err))
	} else if len(removed) > 0 {
		e.hooks().Message(LevelInfo, fmt.Sprintf("removed %d folder(s) an interrupted apply left in the cache", len(removed)))
	}

	p, err := e.makePlan(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e.hooks().Planned(p.plan)

	// Hold every key of the plan so that a concurrent gc removes nothing this apply will read.
	var keys []state.Key
	for _, s := range p.graph.Steps {
		keys = append(keys, s.Key)
	}
	hold, err := e.Store.Hold(ctx, keys...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = hold.Release() }()

	a := &applier{e: e, cfg: cfg, p: p, results: map[*Step]*stepResult{}}
	units := a.units()
	walk(ctx, units, e.parallelism(), func(u *unit, cause error) {
		for _, sp := range u.steps {
			a.finish(sp, StatusSkipped, cause)
		}
	})
	res := &Result{Plan: p.plan}
	var errs []error
	for _, u := range units {
		if u.err != nil {
			var dep errDependencyFailed
			if !errors.As(u.err, &dep) && !errors.Is(u.err, context.Canceled) {
				errs = append(errs, fmt.Errorf("%s: %w", u.name, u.err))
			}
		}
	}
	a.mu.Lock()
	for _, r := range a.results {
		switch r.status {
		case StatusDone:
			res.Ran++
		case StatusFailed:
			res.Failed++
		case StatusCached:
			res.Cached++
		}
	}
	a.mu.Unlock()
	res.Outputs = a.outputs()
	a.ckpt.Lock()
	if err := a.writeManifests(); err != nil {
		errs = append(errs, err)
	}
	if err := e.saveRecord(cfg, p, a); err != nil {
		errs = append(errs, fmt.Errorf("saving the record of this apply: %w", err))
	}
	a.ckpt.Unlock()
	if err := ctx.Err(); err != nil && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("apply cancelled: %w", err))
	}
	return res, errors.Join(errs...)
}

func (e *Engine) parallelism() int {
	if e.Parallelism <= 0 {
		return 2
	}
	return e.Parallelism
}

func (e *Engine) lockEvent(ev state.LockEvent) {
	e.hooks().Message(LevelInfo, ev.String())
}

// applier is the state of one apply.
type applier struct {
	e   *Engine
	cfg *config.Config
	p   *planned

	mu      sync.Mutex
	results map[*Step]*stepResult
	// verified lists the objects whose content this apply checked (see verifyChain).
	verified map[state.Key]bool
	// warned holds the warnings already shown, such as the fallback to TCG, which every VM session meets.
	warned map[string]bool
	// reports holds the reports of the tests the plan found cached, read once (cachedReport).
	reports map[*Step]*TestReport
	// manifested holds the verification status of the SHA256SUMS and manifest this apply last wrote per image.
	manifested map[string]string
	// ckpt orders checkpoints, so that a later one is never overwritten by an earlier one.
	ckpt    sync.Mutex
	started map[*StepPlan]time.Time
	ended   map[*StepPlan]time.Time
}

// done notes when a step's work ended, for steps that are recorded later than that.
func (a *applier) done(sp *StepPlan) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended == nil {
		a.ended = map[*StepPlan]time.Time{}
	}
	a.ended[sp] = a.e.now()
}

type stepResult struct {
	status StepStatus
	output *state.OutputRecord
	export *export.Result
	test   *TestReport // of a test step that ran, passed or not, or that another apply passed meanwhile
}

func (a *applier) start(sp *StepPlan) {
	a.mu.Lock()
	if a.started == nil {
		a.started = map[*StepPlan]time.Time{}
	}
	a.started[sp] = a.e.now()
	a.mu.Unlock()
	a.e.hooks().StepStarted(sp)
}

func (a *applier) finish(sp *StepPlan, status StepStatus, err error) {
	a.mu.Lock()
	elapsed := time.Duration(0)
	if t, ok := a.started[sp]; ok {
		end, ok := a.ended[sp]
		if !ok {
			end = a.e.now()
		}
		elapsed = end.Sub(t)
	}
	r := a.results[sp.step]
	if r == nil {
		r = &stepResult{}
		a.results[sp.step] = r
	}
	r.status = status
	a.mu.Unlock()
	if status == StatusDone {
		if err := a.checkpoint(); err != nil {
			a.e.hooks().Message(LevelWarn, fmt.Sprintf("could not save the progress of this apply: %v", err))
		}
	}
	if err != nil {
		err = errors.New(a.cfg.Redact(err.Error()))
	}
	a.e.hooks().StepFinished(sp, status, elapsed, err)
}

// runStep wraps a single-step unit with start and finish events. fn tells whether it built the step's
// result: when another apply built it while this one waited for its lock, the step is cached, as the disk
// steps are in runGuest, not done.
func (a *applier) runStep(sp *StepPlan, fn func(ctx context.Context) (built bool, err error)) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		a.start(sp)
		built, err := fn(ctx)
		switch {
		case err == nil && !built:
			a.finish(sp, StatusCached, nil)
		case err == nil:
			a.finish(sp, StatusDone, nil)
		case ctx.Err() != nil:
			a.finish(sp, StatusCanceled, err)
		default:
			a.finish(sp, StatusFailed, err)
		}
		return err
	}
}

// units groups the steps to run into units of work with their dependencies.
func (a *applier) units() []*unit {
	var units []*unit
	byStep := map[*Step]*unit{}
	for _, ip := range a.p.plan.Images {
		var session *unit
		for _, sp := range ip.Steps {
			s := sp.step
			if sp.Action != ActionRun {
				continue
			}
			switch {
			case s.Kind.IsDisk():
				if session == nil {
					session = &unit{name: fmt.Sprintf("image %q", s.Image.Name)}
					units = append(units, session)
				}
				session.steps = append(session.steps, sp)
				byStep[s] = session
			default:
				u := &unit{name: fmt.Sprintf("image %q, %s", s.Image.Name, s.Label()), steps: []*StepPlan{sp}}
				units = append(units, u)
				byStep[s] = u
			}
		}
		if session != nil {
			steps := session.steps
			session.run = func(ctx context.Context) error { return a.runGuest(ctx, steps) }
		}
	}
	for _, u := range units {
		seen := map[*unit]bool{u: true}
		for _, sp := range u.steps {
			for _, d := range sp.step.Deps() {
				if du, ok := byStep[d]; ok && !seen[du] {
					seen[du] = true
					u.deps = append(u.deps, du)
				}
			}
		}
		if len(u.steps) == 1 && !u.steps[0].step.Kind.IsDisk() {
			sp := u.steps[0]
			switch sp.step.Kind {
			case KindFetch:
				u.run = a.runStep(sp, func(ctx context.Context) (bool, error) { return a.runFetch(ctx, sp) })
			case KindSeed:
				u.run = a.runStep(sp, func(ctx context.Context) (bool, error) { return a.runSeed(ctx, sp) })
			case KindExport:
				// An export always writes its output: the file is not in the store, so nobody builds it meanwhile.
				u.run = a.runStep(sp, func(ctx context.Context) (bool, error) { return true, a.runExport(ctx, sp) })
			case KindTest:
				u.run = a.runStep(sp, func(ctx context.Context) (bool, error) { return a.runTest(ctx, sp) })
			}
		}
	}
	return units
}

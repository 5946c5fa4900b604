package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
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
	// internal/steps/export.Verification).
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

	// Hold every key of the plan before it is looked up, so that a concurrent gc removes nothing the plan
	// counts as cached.
	var hold *state.Hold
	defer func() {
		if hold != nil {
			_ = hold.Release()
		}
	}()
	p, err := e.makePlan(ctx, cfg, func(keys []state.Key) (err error) {
		hold, err = e.Store.Hold(ctx, keys...)
		return err
	})
	if err != nil {
		return nil, err
	}
	e.hooks().Planned(p.plan)

	a := &applier{e: e, cfg: cfg, p: p, results: map[*step.Step]*stepResult{}}
	a.startPusher(ctx)
	a.pullAll(ctx)
	units := a.units()
	walk(ctx, units, e.parallelism(), func(u *unit, cause error) {
		for _, s := range u.steps {
			a.finish(s, StatusSkipped, cause)
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
	if err := a.writeDownloads(ctx); err != nil {
		errs = append(errs, err)
	}
	res.Outputs = a.outputs()
	a.pushes.wait()
	a.ckpt.Lock()
	if err := a.writeManifests(); err != nil {
		errs = append(errs, err)
	} else if ctx.Err() == nil {
		if err := a.publishOutputs(ctx); err != nil {
			errs = append(errs, err)
		}
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
	results map[*step.Step]*stepResult
	// verified lists the objects whose content this apply checked (see verifyChain).
	verified map[state.Key]bool
	// warned holds the warnings already shown, such as the fallback to TCG, which every VM session meets.
	warned map[string]bool
	// reports holds the reports of the verifying steps the plan found cached, read once (cachedReport).
	reports map[*step.Step]*step.TestReport
	// manifested holds the verification status of the SHA256SUMS and manifest this apply last wrote per image.
	manifested map[string]string
	// pushes uploads new results to the remote cache; nil without one (remote.go).
	pushes *pusher
	// ckpt orders checkpoints, so that a later one is never overwritten by an earlier one.
	ckpt    sync.Mutex
	started map[*step.Step]time.Time
	ended   map[*step.Step]time.Time
}

type stepResult struct {
	status StepStatus
	output *state.OutputRecord // of a FileKind step that ran
	// data is the kind's result data (step.Result.Data): an export's result, a test's report (also of a
	// failed test, or of one another apply passed meanwhile).
	data any
	// published is where the output file now is in registries (state.OutputRecord.Published).
	published map[string]string
}

// result returns the result entry of a step, made on first use. Call with a.mu held.
func (a *applier) result(s *step.Step) *stepResult {
	r := a.results[s]
	if r == nil {
		r = &stepResult{}
		a.results[s] = r
	}
	return r
}

// setData keeps a step's result data.
func (a *applier) setData(s *step.Step, data any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.result(s).data = data
}

// done notes when a step's work ended, for steps that are recorded later than that.
func (a *applier) done(s *step.Step) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ended == nil {
		a.ended = map[*step.Step]time.Time{}
	}
	a.ended[s] = a.e.now()
}

func (a *applier) start(s *step.Step) {
	a.mu.Lock()
	if a.started == nil {
		a.started = map[*step.Step]time.Time{}
	}
	a.started[s] = a.e.now()
	a.mu.Unlock()
	a.e.hooks().StepStarted(a.p.rows[s])
}

func (a *applier) finish(s *step.Step, status StepStatus, err error) {
	a.mu.Lock()
	elapsed := time.Duration(0)
	if t, ok := a.started[s]; ok {
		end, ok := a.ended[s]
		if !ok {
			end = a.e.now()
		}
		elapsed = end.Sub(t)
	}
	a.result(s).status = status
	a.mu.Unlock()
	if status == StatusDone {
		a.pushes.add(s)
		if err := a.checkpoint(); err != nil {
			a.e.hooks().Message(LevelWarn, fmt.Sprintf("could not save the progress of this apply: %v", err))
		}
	}
	if err != nil {
		err = a.cfg.RedactError(err)
	}
	a.e.hooks().StepFinished(a.p.rows[s], status, elapsed, err)
}

// units groups the steps to run into units of work with their dependencies: the guest steps of an image
// that are to run form one session; every host step is a unit of its own.
func (a *applier) units() []*unit {
	var units []*unit
	byStep := map[*step.Step]*unit{}
	for _, ip := range a.p.plan.Images {
		var session *unit
		for _, s := range a.p.graph.ImageSteps(ip.Name) {
			if !a.p.run[s] {
				continue
			}
			if s.IsGuest() {
				if session == nil {
					session = &unit{name: fmt.Sprintf("image %q", s.Image.Name)}
					units = append(units, session)
				}
				session.steps = append(session.steps, s)
				byStep[s] = session
				continue
			}
			s := s
			u := &unit{name: fmt.Sprintf("image %q, %s", s.Image.Name, s.Label()), steps: []*step.Step{s}}
			u.run = func(ctx context.Context) error { return a.runHost(ctx, s) }
			if a.p.restorable[s] {
				u.run = func(ctx context.Context) error { return a.restoreOutput(ctx, s) }
			}
			units = append(units, u)
			byStep[s] = u
		}
		if session != nil {
			steps := session.steps
			session.run = func(ctx context.Context) error { return a.runGuest(ctx, steps) }
		}
	}
	for _, u := range units {
		seen := map[*unit]bool{u: true}
		for _, s := range u.steps {
			for _, d := range s.Deps() {
				if du, ok := byStep[d]; ok && !seen[du] {
					seen[du] = true
					u.deps = append(u.deps, du)
				}
			}
		}
	}
	return units
}

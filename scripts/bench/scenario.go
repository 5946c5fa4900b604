package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// scenario is one configuration measured end to end: full build from an empty cache, no-op apply and
// plan, cache footprint, then an edit of its last provisioner and the incremental apply.
type scenario struct {
	Name    string // folder name under the work folder, and the prefix of the log files
	Example string // the configuration in the repository, copied before use
	Edit    edit
}

// The two configurations of the bench. Each edit changes text that only the last provisioner of the
// configuration uses, so the incremental build re-runs that provisioner, the cleanup and the export of
// that image, from cached layers.
var (
	baseScenario = scenario{
		Name:    "debian-12-base",
		Example: "examples/debian-12-base",
		Edit: edit{File: "debian-12-base.imgform.hcl", Old: `built by imgform.\n"`, New: `built by imgform (bench edit).\n"`,
			What: `the motd provisioner's file content ("built by imgform." -> "built by imgform (bench edit).")`},
	}
	variantsScenario = scenario{
		Name:    "debian-12-variants",
		Example: "examples/debian-12-variants",
		Edit: edit{File: "debian-12-variants.imgform.hcl", Old: `X11Forwarding no\n`, New: `X11Forwarding no\nMaxAuthTries 3\n`,
			What: `the bastion's hardening provisioner (one more sshd_config line)`},
	}
)

// scenarioResult holds everything measured for one scenario. A nil run was not reached.
type scenarioResult struct {
	S                      scenario
	Dir, Cache             string
	Full, Noop, Plan, Incr *run
	PlanToRun              int
	FPFull, FPIncr         *footprint
	Err                    error
}

// runScenario measures one scenario. It stops at the first failure and returns what it has so far, so
// that a 40-minute bench that fails late still reports its first figures.
func runScenario(ctx context.Context, sc scenario, cfg *benchConfig) (res *scenarioResult) {
	res = &scenarioResult{S: sc}
	fail := func(err error) *scenarioResult {
		res.Err = err
		fmt.Fprintf(cfg.progress, "%s  %s: FAILED: %v\n", stamp(), sc.Name, err)
		return res
	}
	root := filepath.Join(cfg.work, sc.Name)
	res.Dir, res.Cache = filepath.Join(root, "config"), filepath.Join(root, "cache")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fail(err)
	}
	if err := copyConfig(filepath.Join(cfg.repo, sc.Example), res.Dir); err != nil {
		return fail(err)
	}
	if cfg.seedCache != "" {
		// Only for trying the driver: the "full" build then runs what the seed cache lacks.
		if out, err := exec.CommandContext(ctx, "cp", "-a", "--sparse=always", cfg.seedCache, res.Cache).CombinedOutput(); err != nil {
			return fail(fmt.Errorf("copy of the seed cache: %v: %s", err, out))
		}
	}
	im := &imgform{bin: cfg.bin, cacheDir: res.Cache, vars: cfg.vars, logDir: root, progress: cfg.progress}

	var err error
	if res.Full, err = im.apply(ctx, sc.Name+"-full", res.Dir); err != nil {
		return fail(err)
	}
	if err := res.Full.check(); err != nil {
		return fail(err)
	}
	if res.FPFull, err = footprintPtr(ctx, res.Cache); err != nil {
		return fail(err)
	}
	if res.Noop, err = im.apply(ctx, sc.Name+"-noop", res.Dir); err != nil {
		return fail(err)
	}
	if err := res.Noop.check(); err != nil {
		return fail(err)
	}
	if res.Plan, err = im.plan(ctx, sc.Name+"-plan", res.Dir); err != nil {
		return fail(err)
	}
	if err := res.Plan.check(); err != nil {
		return fail(err)
	}
	var p plan
	if err := json.Unmarshal(res.Plan.Stdout, &p); err != nil {
		return fail(fmt.Errorf("plan -json output: %w", err))
	}
	res.PlanToRun = p.ToRun
	if err := sc.Edit.apply(res.Dir); err != nil {
		return fail(err)
	}
	if res.Incr, err = im.apply(ctx, sc.Name+"-incremental", res.Dir); err != nil {
		return fail(err)
	}
	if err := res.Incr.check(); err != nil {
		return fail(err)
	}
	if res.FPIncr, err = footprintPtr(ctx, res.Cache); err != nil {
		return fail(err)
	}
	return res
}

func footprintPtr(ctx context.Context, dir string) (*footprint, error) {
	fp, err := measureFootprint(ctx, dir)
	return &fp, err
}

// finalKey returns the key of the first image's cleanup step in the full build: its layer is the image
// the export comparison compresses.
func (r *scenarioResult) finalKey() (string, error) {
	if r.Full == nil {
		return "", fmt.Errorf("%s: no full build", r.S.Name)
	}
	p := planOf(r.Full.Events)
	if p == nil || len(p.Images) == 0 {
		return "", fmt.Errorf("%s: the full build's events have no plan", r.S.Name)
	}
	key := p.stepKey(p.Images[0].Name + "/cleanup")
	if key == "" {
		return "", fmt.Errorf("%s: no cleanup step in the plan", r.S.Name)
	}
	return key, nil
}

// outputBytes is the size of the outputs an apply reported (written or unchanged).
func outputBytes(r *run) int64 {
	var n int64
	if f := finishedOf(r.Events); f != nil {
		for _, o := range f.Outputs {
			n += o.Size
		}
	}
	return n
}

// benchConfig is what every stage needs.
type benchConfig struct {
	repo      string // repository root
	bin       string // imgform binary
	source    string // the source image
	vars      []string
	work      string
	seedCache string
	progress  io.Writer
}

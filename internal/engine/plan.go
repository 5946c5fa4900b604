package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/remote"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// PlanFormatVersion is the format_version of the JSON plan (docs/plan-json.md). It changes when a field
// changes meaning or goes away; new fields do not change it.
const PlanFormatVersion = 1

// Action says what apply will do with a step.
type Action string

const (
	// ActionRun: the step has no result for its key (or its output file is gone) and something needs it.
	ActionRun Action = "run"
	// ActionCached: the result for the step's key is in the store (for an export: the output file on disk is
	// the one the last apply wrote for this key).
	ActionCached Action = "cached"
	// ActionSkip: the step has no result, but nothing needs one because every step after it is cached.
	ActionSkip Action = "skip"
)

// Plan is what apply would do, as plain data; rendering it is the CLI's job.
type Plan struct {
	FormatVersion int          `json:"format_version"`
	Config        string       `json:"config"`
	Images        []*ImagePlan `json:"images"`
	ToRun         int          `json:"to_run"`
	Cached        int          `json:"cached"`
	Skipped       int          `json:"skipped"`
	// CachedRemote counts the cached steps whose result comes from the remote cache (part of Cached).
	CachedRemote int `json:"cached_remote,omitempty"`
	// SkipTests is set when apply will not run the test steps (-skip-tests): their outputs are then marked
	// unverified.
	SkipTests bool `json:"skip_tests,omitempty"`
}

// ImagePlan lists the steps of one image in run order.
type ImagePlan struct {
	Name string `json:"name"`
	// Selection is set when -only or -except chose images: why this one is in the plan although it was not
	// chosen (an image a chosen one derives from), or that it was left out. Empty for a chosen image.
	Selection string `json:"selection,omitempty"`
	// LeftOut is set for an image that -only or -except left out: none of its steps runs.
	LeftOut bool        `json:"left_out,omitempty"`
	Steps   []*StepPlan `json:"steps"`
}

// StepPlan is one step of the plan: plain data, as the CLI and -json show it. The address's fields are
// image, kind and name.
type StepPlan struct {
	step.Address
	// ID is Address.ID(), the step's name in records and manifests.
	ID string `json:"id"`
	// Ref is the address as -replace takes it: "debian-12-base.provision.motd".
	Ref     string   `json:"ref"`
	Label   string   `json:"label"`
	Key     string   `json:"key"`
	Action  Action   `json:"action"`
	Reasons []string `json:"reasons,omitempty"`
	// Output is the file the step writes outside the store (an export), relative to the configuration
	// folder as written in it.
	Output string `json:"output,omitempty"`
	// Downloads are the local files the step copies out of the guest (step.Downloader), as written in the
	// configuration: apply writes each one that is missing or differs, also when the step is cached.
	Downloads []string `json:"downloads,omitempty"`
	// Verifies is set for the step that proves the image works (its test): a plan shows its reasons even
	// when it is cached, and -skip-tests leaves it out.
	Verifies bool `json:"verifies,omitempty"`
	// Remote is set on a cached step whose result comes from the remote cache (apply downloads it).
	Remote *RemoteHit `json:"remote,omitempty"`
	// Start is set on a guest step that runs first in its VM after a cached layer: StartResume when the VM
	// state saved with that layer is resumed, StartBoot when the layer is booted (a reason says why).
	Start string `json:"start,omitempty"`
}

// How a guest session that starts from a cached layer starts its VM (StepPlan.Start).
const (
	StartResume = "resume"
	StartBoot   = "boot"
)

// HasChanges tells whether apply would run anything.
func (p *Plan) HasChanges() bool { return p.ToRun > 0 }

// Step returns the plan of the step with the given ID, or nil.
func (p *Plan) Step(id string) *StepPlan {
	for _, ip := range p.Images {
		for _, sp := range ip.Steps {
			if sp.ID == id {
				return sp
			}
		}
	}
	return nil
}

// planned is a plan with the graph and lookups it was made from, for apply.
type planned struct {
	plan    *Plan
	graph   *Graph
	record  *state.Record
	present map[*step.Step]bool
	run     map[*step.Step]bool
	skipped map[*step.Step]bool // left out by -skip-tests
	// The remote cache (remote.go): what it holds of the steps the store lacks, what apply pulls from it,
	// what it pulled and what failed to come. restorable marks an output whose object is in the store: it
	// is written from there, and nothing below it is needed.
	remote     map[*step.Step]remote.Entry
	pull       map[*step.Step]bool
	pulled     map[*step.Step]bool
	pullFailed map[*step.Step]error
	restorable map[*step.Step]bool
	unpushed   map[*step.Step]bool // in the store, not in the remote: this apply pushes it
	rows       map[*step.Step]*StepPlan
	// shared carries what the kinds worked out while keying (a resolved source checksum) to their runs.
	shared *step.Shared
	// tokens are the rebuild tokens in the keys (rebuild.go), forced says why a step builds again although
	// its key was cached (-replace, refresh_every), selected what -only and -except leave in (select.go).
	tokens   map[*step.Step]string
	forced   map[*step.Step]string
	selected *selection
}

// makePlan computes every key, looks each up and decides what runs. It downloads nothing but sums files.
// hold, when set, is called with every key before any is looked up: apply holds them there, so that a
// cache gc cannot remove a result between the plan counting it as cached and the apply reading it.
func (e *Engine) makePlan(ctx context.Context, cfg *config.Config, hold func(keys []state.Key) error) (*planned, error) {
	g, err := BuildGraph(cfg, e.Kinds)
	if err != nil {
		return nil, err
	}
	selected, err := e.selectImages(cfg)
	if err != nil {
		return nil, err
	}
	kc, err := e.keyContext(cfg)
	if err != nil {
		return nil, err
	}
	rec, err := e.Store.LoadRecord(recordID(cfg))
	if errors.Is(err, state.ErrRecordDamaged) {
		// The record only explains changes and remembers outputs: without it every step is looked up in the
		// store as usual, outputs are written again, and this apply's record replaces the damaged one.
		e.hooks().Message(LevelWarn, fmt.Sprintf("%v; planning as for a first apply (the next apply replaces it)", err))
		rec, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	tokens, forced, err := e.keyAll(ctx, kc, g, rec)
	if err != nil {
		return nil, err
	}
	if hold != nil {
		keys := make([]state.Key, len(g.Steps))
		for i, s := range g.Steps {
			keys[i] = s.Key
		}
		if err := hold(keys); err != nil {
			return nil, err
		}
	}
	if err := kc.Files.Save(); err != nil {
		e.hooks().Message(LevelWarn, fmt.Sprintf("could not save the file hash cache: %v", err))
	}
	p := &planned{graph: g, record: rec, tokens: tokens, forced: forced, selected: selected, present: map[*step.Step]bool{}, skipped: map[*step.Step]bool{}, shared: kc.Shared,
		remote: map[*step.Step]remote.Entry{}, pulled: map[*step.Step]bool{}, pullFailed: map[*step.Step]error{},
		restorable: map[*step.Step]bool{}, unpushed: map[*step.Step]bool{}}
	for _, s := range g.Steps {
		ok, err := e.present(cfg, s, rec)
		if err != nil {
			return nil, err
		}
		p.present[s] = ok
		if _, verifies := s.Kind.(step.Verifier); verifies && e.SkipTests {
			p.skipped[s] = true
		}
		if _, file := s.Kind.(step.FileKind); file && !ok {
			if _, stored, err := e.Store.Lookup(s.Key); err != nil {
				return nil, err
			} else if stored {
				p.restorable[s] = true
			}
		}
	}
	if e.Remote != nil {
		// Only an apply (which holds its keys) pushes; a plan asks only for what the store lacks.
		pushing := hold != nil && e.Remote.Mode() == remote.ReadWrite
		if err := e.lookupRemote(ctx, p, pushing); err != nil {
			return nil, err
		}
	}
	e.decide(ctx, cfg, p)
	return p, nil
}

// decide marks what runs and what is pulled, walking backwards from what the user asked for (the steps of
// each image that no other step of it builds on: the outputs, the test, or the last layer of an image
// without either): a missing step that something needs runs, or is pulled when the remote has it (then
// nothing below it is needed); a missing step that nothing needs is skipped. Apply decides again after its
// pulls.
func (e *Engine) decide(ctx context.Context, cfg *config.Config, p *planned) {
	for {
		e.walkNeeds(p)
		// A test's report is for the bytes of the layer it booted: when that layer is built again (builds
		// are not reproducible), the report says nothing about the new one, so the test runs again.
		stale := false
		for _, s := range p.graph.Steps {
			if _, ok := s.Kind.(step.Verifier); ok && p.present[s] && s.Parent != nil && p.run[s.Parent] {
				p.present[s], stale = false, true
			}
		}
		if !stale {
			break
		}
	}
	p.plan = e.describe(cfg, p)
	e.describeStarts(ctx, p)
}

// walkNeeds is decide's walk.
func (e *Engine) walkNeeds(p *planned) {
	g := p.graph
	p.run, p.pull = map[*step.Step]bool{}, map[*step.Step]bool{}
	needed := map[*step.Step]bool{}
	inner := map[*step.Step]bool{}
	for _, s := range g.Steps {
		if p.skipped[s] {
			continue
		}
		for _, d := range s.Deps() {
			if d.Image == s.Image {
				inner[d] = true
			}
		}
	}
	for _, s := range g.Steps {
		if !inner[s] && !p.skipped[s] && p.selected.has(s.Image.Name) {
			needed[s] = true
		}
	}
	for i := len(g.Steps) - 1; i >= 0; i-- {
		s := g.Steps[i]
		if !needed[s] || p.present[s] {
			continue
		}
		if p.hasRemote(s) && !p.restorable[s] && !p.pulled[s] {
			p.pull[s] = true
			continue
		}
		p.run[s] = true
		if p.restorable[s] {
			continue
		}
		for _, d := range s.Deps() {
			needed[d] = true
		}
	}
}

// hasRemote tells whether the remote holds the step's result and it has not failed to come.
func (p *planned) hasRemote(s *step.Step) bool {
	_, ok := p.remote[s]
	return ok && p.pullFailed[s] == nil
}

// present tells whether a step's result exists: an object in the store, or for an export the output file
// that the last apply wrote for this key, unchanged (same size and modification time).
func (e *Engine) present(cfg *config.Config, s *step.Step, rec *state.Record) (bool, error) {
	fk, ok := s.Kind.(step.FileKind)
	if !ok {
		obj, ok, err := e.Store.Lookup(s.Key)
		if err != nil || !ok {
			return false, err
		}
		return e.reportFits(s, obj)
	}
	out := recordedOutput(rec, s)
	if out == nil || out.Key != s.Key {
		return false, nil
	}
	fi, err := os.Stat(outputPath(cfg, fk.OutputFile(s)))
	if err != nil {
		return false, nil
	}
	return fi.Size() == out.Size && fi.ModTime().Equal(out.ModTime), nil
}

// reportFits tells whether a test's report was made on the layer the store holds now under its parent's
// key (step.TestedLayerAttr), when the store holds one: a report travels without its layer (a runner that
// only downloads outputs needs no layer), so the object does not name the layer as its parent.
func (e *Engine) reportFits(s *step.Step, obj *state.Object) (bool, error) {
	want := obj.Attrs[step.TestedLayerAttr]
	if _, ok := s.Kind.(step.Verifier); !ok || want == "" || s.Parent == nil {
		return true, nil
	}
	layer, ok, err := e.Store.Lookup(s.Parent.Key)
	if err != nil || !ok {
		return err == nil, err
	}
	return layer.SHA256 == want, nil
}

// recordedOutput is the file the last apply wrote for a FileKind step at its current path, or nil.
func recordedOutput(rec *state.Record, s *step.Step) *state.OutputRecord {
	fk, ok := s.Kind.(step.FileKind)
	if !ok {
		return nil
	}
	sr := rec.Image(s.Image.Name).Step(s.Addr.ID())
	if sr == nil {
		return nil
	}
	for i := range sr.Outputs {
		if sr.Outputs[i].Path == fk.OutputFile(s) {
			return &sr.Outputs[i]
		}
	}
	return nil
}

// outputFile is the configured path of a FileKind step's file, "" for other steps.
// downloadFiles are the local paths of a step's downloads.
func downloadFiles(s *step.Step) []string {
	dk, ok := s.Kind.(step.Downloader)
	if !ok {
		return nil
	}
	var out []string
	for _, d := range dk.Downloads(s) {
		out = append(out, d.Path)
	}
	return out
}

func outputFile(s *step.Step) string {
	if fk, ok := s.Kind.(step.FileKind); ok {
		return fk.OutputFile(s)
	}
	return ""
}

func outputPath(cfg *config.Config, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(cfg.Dir, p)
}

// recordID names the record of a configuration folder: its absolute path (records are local to a machine).
func recordID(cfg *config.Config) string {
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return cfg.Dir
	}
	return abs
}

func (e *Engine) describe(cfg *config.Config, p *planned) *Plan {
	plan := &Plan{FormatVersion: PlanFormatVersion, Config: cfg.Dir, SkipTests: e.SkipTests}
	byImage := map[string]*ImagePlan{}
	p.rows = map[*step.Step]*StepPlan{}
	for _, s := range p.graph.Steps {
		ip := byImage[s.Image.Name]
		if ip == nil {
			ip = &ImagePlan{Name: s.Image.Name, Selection: p.selected.note(s.Image.Name), LeftOut: !p.selected.has(s.Image.Name)}
			byImage[s.Image.Name] = ip
			plan.Images = append(plan.Images, ip)
		}
		_, verifies := s.Kind.(step.Verifier)
		sp := &StepPlan{Address: s.Addr, ID: s.Addr.ID(), Ref: s.Addr.Ref(), Label: s.Label(), Key: s.Key.String(), Output: outputFile(s), Downloads: downloadFiles(s), Verifies: verifies}
		p.rows[s] = sp
		switch {
		case p.run[s] && p.restorable[s]:
			sp.Action = ActionRun
			sp.Reasons = []string{fmt.Sprintf("output %s is written from the cache (key %s): nothing is rebuilt", outputFile(s), s.Key.Short())}
			plan.ToRun++
		case p.run[s] && p.forced[s] != "":
			sp.Action = ActionRun
			sp.Reasons = []string{p.forced[s]}
			plan.ToRun++
		case p.run[s]:
			sp.Action = ActionRun
			sp.Reasons = p.reasons(cfg, s)
			if err := p.pullFailed[s]; err != nil {
				sp.Reasons = append([]string{"the remote cache has it, but the pull failed"}, sp.Reasons...)
			}
			plan.ToRun++
		case p.pull[s] || (p.present[s] && p.pulled[s]):
			sp.Action = ActionCached
			sp.Remote = &RemoteHit{Size: p.remote[s].Size}
			plan.Cached++
			plan.CachedRemote++
		case p.present[s]:
			sp.Action = ActionCached
			plan.Cached++
		case p.hasRemote(s) && !p.skipped[s]:
			// In the remote, and nothing needs it here: cached, and not downloaded.
			sp.Action = ActionCached
			sp.Remote = &RemoteHit{Size: p.remote[s].Size}
			plan.Cached++
			plan.CachedRemote++
		case p.skipped[s]:
			sp.Action = ActionSkip
			sp.Reasons = []string{"-skip-tests: the outputs of this image will be marked unverified"}
			plan.Skipped++
		case !p.selected.has(s.Image.Name):
			sp.Action = ActionSkip
			sp.Reasons = []string{p.selected.why(s.Image.Name)}
			plan.Skipped++
		default:
			sp.Action = ActionSkip
			sp.Reasons = []string{"no result for key " + s.Key.Short() + ", but every step that needs it is cached"}
			plan.Skipped++
		}
		ip.Steps = append(ip.Steps, sp)
	}
	return plan
}

// reasons explains why a step runs: what is missing, and which inputs differ from the last apply.
func (p *planned) reasons(cfg *config.Config, s *step.Step) []string {
	sr := p.record.Image(s.Image.Name).Step(s.Addr.ID())
	file := outputFile(s)
	if file != "" {
		if out := recordedOutput(p.record, s); out != nil && out.Key == s.Key {
			if _, err := os.Stat(outputPath(cfg, file)); err != nil {
				return []string{fmt.Sprintf("output %s was removed", file)}
			}
			return []string{fmt.Sprintf("output %s was modified since the last apply", file)}
		}
	}
	var out []string
	if file != "" {
		out = append(out, fmt.Sprintf("output %s has not been written for key %s", file, s.Key.Short()))
		if sr != nil && len(sr.Outputs) > 0 && sr.Outputs[0].Path != file {
			out = append(out, fmt.Sprintf("the output path changed from %s", sr.Outputs[0].Path))
		}
	} else if sr != nil && sr.Key == s.Key {
		return []string{fmt.Sprintf("the result for key %s is no longer in the cache", s.Key.Short())}
	} else {
		out = append(out, "no result for key "+s.Key.Short())
	}
	if sr == nil {
		if p.record == nil {
			return append(out, "first apply of this configuration")
		}
		return append(out, "the last apply did not build this step (it is new, or it failed or was not reached)")
	}
	for _, c := range state.CompareInputs(sr.Inputs, inputDigests(s.Inputs)) {
		out = append(out, p.explain(s, c))
	}
	return out
}

// explain turns a changed input into words: the engine words what it knows (the steps a step builds on,
// files, variables, the kind's version), the kind the rest.
func (p *planned) explain(s *step.Step, c state.InputChange) string {
	var in *step.Input
	for i := range s.Inputs {
		if s.Inputs[i].Name == c.Name {
			in = &s.Inputs[i]
		}
	}
	if in == nil {
		return c.String() // gone from the key
	}
	switch in.Type {
	case step.InputStep:
		dep := p.graph.Step(in.Step.ID())
		what := dep.Label()
		if dep.Image != s.Image {
			what = fmt.Sprintf("image %q", dep.Image.Name)
		}
		if p.run[dep] {
			return fmt.Sprintf("it builds on %s, which will run", what)
		}
		return fmt.Sprintf("it builds on %s, which changed", what)
	case step.InputVariable, step.InputFile:
		return c.String()
	case step.InputKind:
		return "imgform's implementation of this step changed"
	case step.InputRebuild:
		return "it is built again (-replace or refresh_every)"
	}
	if ex, ok := s.Kind.(step.Explainer); ok {
		if text := ex.Explain(*in); text != "" {
			return text
		}
	}
	if in.Type == step.InputScript {
		return fmt.Sprintf("imgform's %s changed", in.Name)
	}
	return fmt.Sprintf("its %s configuration changed", in.Name)
}

func inputDigests(in []step.Input) map[string]string {
	m := make(map[string]string, len(in))
	for _, i := range in {
		m[i.Name] = i.Digest
	}
	return m
}

package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
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
	// SkipTests is set when apply will not run the test steps (-skip-tests): their outputs are then marked
	// unverified.
	SkipTests bool `json:"skip_tests,omitempty"`
}

// ImagePlan lists the steps of one image in run order.
type ImagePlan struct {
	Name  string      `json:"name"`
	Steps []*StepPlan `json:"steps"`
}

// StepPlan is one step of the plan.
type StepPlan struct {
	ID      string   `json:"id"`
	Kind    Kind     `json:"kind"`
	Name    string   `json:"name,omitempty"`
	Label   string   `json:"label"`
	Key     string   `json:"key"`
	Action  Action   `json:"action"`
	Reasons []string `json:"reasons,omitempty"`
	// Output is the file an export writes, relative to the configuration folder as written in it.
	Output string `json:"output,omitempty"`

	step *Step
}

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
	present map[*Step]bool
	run     map[*Step]bool
	kc      *keyContext
}

// makePlan computes every key, looks each up and decides what runs. It downloads nothing but sums files.
func (e *Engine) makePlan(ctx context.Context, cfg *config.Config) (*planned, error) {
	g, err := BuildGraph(cfg)
	if err != nil {
		return nil, err
	}
	kc, err := e.keyContext(cfg)
	if err != nil {
		return nil, err
	}
	for _, s := range g.Steps {
		if err := kc.computeKey(ctx, s); err != nil {
			return nil, err
		}
	}
	if err := kc.files.Save(); err != nil {
		e.hooks().Message(LevelWarn, fmt.Sprintf("could not save the file hash cache: %v", err))
	}
	rec, err := e.Store.LoadRecord(recordID(cfg))
	if err != nil {
		return nil, err
	}
	p := &planned{graph: g, record: rec, present: map[*Step]bool{}, run: map[*Step]bool{}, kc: kc}
	for _, s := range g.Steps {
		ok, err := e.present(cfg, s, rec)
		if err != nil {
			return nil, err
		}
		p.present[s] = ok
	}
	// Walk backwards from what the user asked for (the outputs, and the result of an image that has none)
	// and mark what must run to produce it; a missing step that nothing needs is skipped.
	needed := map[*Step]bool{}
	for _, s := range g.Steps {
		switch {
		case s.Kind == KindExport, s.Kind == KindCleanup && len(s.Image.Outputs) == 0:
			needed[s] = true
		case s.Kind == KindTest && !e.SkipTests:
			needed[s] = true
		}
	}
	for i := len(g.Steps) - 1; i >= 0; i-- {
		s := g.Steps[i]
		if !needed[s] || p.present[s] {
			continue
		}
		p.run[s] = true
		for _, d := range s.Deps() {
			needed[d] = true
		}
	}
	p.plan = e.describe(cfg, p)
	return p, nil
}

// present tells whether a step's result exists: an object in the store, or for an export the output file
// that the last apply wrote for this key, unchanged (same size and modification time).
func (e *Engine) present(cfg *config.Config, s *Step, rec *state.Record) (bool, error) {
	if s.Kind != KindExport {
		_, ok, err := e.Store.Lookup(s.Key)
		return ok, err
	}
	out := recordedOutput(rec, s)
	if out == nil || out.Key != s.Key {
		return false, nil
	}
	fi, err := os.Stat(outputPath(cfg, s.Output))
	if err != nil {
		return false, nil
	}
	return fi.Size() == out.Size && fi.ModTime().Equal(out.ModTime), nil
}

func recordedOutput(rec *state.Record, s *Step) *state.OutputRecord {
	sr := rec.Image(s.Image.Name).Step(s.ID)
	if sr == nil {
		return nil
	}
	for i := range sr.Outputs {
		if sr.Outputs[i].Path == s.Output.Path {
			return &sr.Outputs[i]
		}
	}
	return nil
}

func outputPath(cfg *config.Config, o *config.Output) string {
	if filepath.IsAbs(o.Path) {
		return o.Path
	}
	return filepath.Join(cfg.Dir, o.Path)
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
	for _, s := range p.graph.Steps {
		ip := byImage[s.Image.Name]
		if ip == nil {
			ip = &ImagePlan{Name: s.Image.Name}
			byImage[s.Image.Name] = ip
			plan.Images = append(plan.Images, ip)
		}
		sp := &StepPlan{ID: s.ID, Kind: s.Kind, Name: s.Name, Label: s.Label(), Key: s.Key.String(), step: s}
		if s.Output != nil {
			sp.Output = s.Output.Path
		}
		switch {
		case p.run[s]:
			sp.Action = ActionRun
			sp.Reasons = p.reasons(cfg, s)
			plan.ToRun++
		case p.present[s]:
			sp.Action = ActionCached
			plan.Cached++
		case s.Kind == KindTest && e.SkipTests:
			sp.Action = ActionSkip
			sp.Reasons = []string{"-skip-tests: the outputs of this image will be marked unverified"}
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
func (p *planned) reasons(cfg *config.Config, s *Step) []string {
	sr := p.record.Image(s.Image.Name).Step(s.ID)
	if s.Kind == KindExport {
		if out := recordedOutput(p.record, s); out != nil && out.Key == s.Key {
			if _, err := os.Stat(outputPath(cfg, s.Output)); err != nil {
				return []string{fmt.Sprintf("output %s was removed", s.Output.Path)}
			}
			return []string{fmt.Sprintf("output %s was modified since the last apply", s.Output.Path)}
		}
	}
	var out []string
	if s.Kind == KindExport {
		out = append(out, fmt.Sprintf("output %s has not been written for key %s", s.Output.Path, s.Key.Short()))
		if sr != nil && len(sr.Outputs) > 0 && sr.Outputs[0].Path != s.Output.Path {
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

// explain turns a changed input into words.
func (p *planned) explain(s *Step, c state.InputChange) string {
	name := c.Name
	switch {
	case strings.HasPrefix(name, "step "):
		dep := p.graph.Step(strings.TrimPrefix(name, "step "))
		if dep == nil {
			return fmt.Sprintf("it now builds on %s", strings.TrimPrefix(name, "step "))
		}
		what := dep.Label()
		if dep.Image != s.Image {
			what = fmt.Sprintf("image %q", dep.Image.Name)
		}
		if p.run[dep] {
			return fmt.Sprintf("it builds on %s, which will run", what)
		}
		return fmt.Sprintf("it builds on %s, which changed", what)
	case strings.HasPrefix(name, "variable "), strings.HasPrefix(name, "script "), strings.HasPrefix(name, "file "):
		return c.String()
	case name == "kind":
		return "imgform's implementation of this step changed"
	case name == "source checksum":
		return "the source image changed (new checksum)"
	case strings.HasPrefix(name, "source "):
		return fmt.Sprintf("the %s changed", name)
	case name == "user-data":
		return "the rendered user-data changed (userdata or network blocks)"
	case name == "smoke_test":
		return "the built-in checks changed (smoke_test block, cleanup or network blocks, or imgform's checks)"
	case strings.HasPrefix(name, "test "):
		return fmt.Sprintf("the %s block changed", name)
	}
	return fmt.Sprintf("its %s configuration changed", name)
}

func inputDigests(in []Input) map[string]string {
	m := make(map[string]string, len(in))
	for _, i := range in {
		m[i.Name] = i.Digest
	}
	return m
}

package engine

import (
	"errors"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// checkpoint saves what has finished so far, after each step that ran: the record (an export counts as
// cached only when the record knows its file) and the manifests of images whose outputs are all written.
// An apply killed later then loses only the step that was running.
func (a *applier) checkpoint() error {
	a.ckpt.Lock()
	defer a.ckpt.Unlock()
	return errors.Join(a.writeManifests(), a.e.saveRecord(a.cfg, a.p, a))
}

// saveRecord writes what this apply left behind. A step that did not succeed keeps the entry of the apply
// before, so the next plan still explains its changes against what was last built.
func (e *Engine) saveRecord(cfg *config.Config, p *planned, a *applier) error {
	id := recordID(cfg)
	rec := &state.Record{ID: id, Applied: e.now().UTC(), Images: map[string]*state.ImageRecord{}}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range p.graph.Steps {
		ir := rec.Images[s.Image.Name]
		if ir == nil {
			ir = &state.ImageRecord{}
			rec.Images[s.Image.Name] = ir
		}
		sr := state.StepRecord{Name: s.Addr.ID(), Kind: s.Addr.Kind, Key: s.Key, Inputs: inputDigests(s.Inputs), Rebuild: p.tokens[s]}
		r := a.results[s]
		ok := p.present[s] || (r != nil && (r.status == StatusDone || r.status == StatusCached || r.status == StatusPulled || r.status == StatusRestored))
		if !ok {
			old := p.record.Image(s.Image.Name).Step(s.Addr.ID())
			if old == nil {
				continue
			}
			sr = *old
		}
		if _, file := s.Kind.(step.FileKind); file {
			switch {
			case r != nil && r.output != nil:
				sr.Outputs = []state.OutputRecord{*r.output}
			case p.present[s]:
				sr.Outputs = []state.OutputRecord{*recordedOutput(p.record, s)}
			}
			if r != nil && r.published != nil && len(sr.Outputs) == 1 {
				sr.Outputs[0].Published = r.published
			}
		}
		ir.Steps = append(ir.Steps, sr)
	}
	return e.Store.SaveRecord(id, rec)
}

// outputs lists every output of the configuration as it stands after apply.
func (a *applier) outputs() []OutputResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []OutputResult
	for _, s := range a.p.graph.Steps {
		if _, file := s.Kind.(step.FileKind); !file {
			continue
		}
		var o *state.OutputRecord
		written := false
		if r := a.results[s]; r != nil && r.output != nil {
			o, written = r.output, true
		} else if a.p.present[s] {
			o = recordedOutput(a.p.record, s)
		}
		if o == nil {
			continue
		}
		out = append(out, OutputResult{Image: s.Image.Name, Name: s.Addr.Name, Path: o.Path, SHA256: o.SHA256, Size: o.Size,
			Written: written, Verification: a.verification(a.p.graph.Verifier(s.Image.Name)).Status})
	}
	return out
}

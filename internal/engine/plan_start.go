package engine

import (
	"context"
	"fmt"

	"gitlab.com/imgform/imgform/internal/step"
)

// describeStarts fills in StepPlan.Start: for each guest step that runs first after a cached guest layer,
// whether its VM resumes the state saved with that layer or boots it, as the Machines say (step.Resumer).
// A layer that the remote cache will provide is not looked at: its state comes with the pull, if it has one.
func (e *Engine) describeStarts(ctx context.Context, p *planned) {
	resumer, ok := e.Machines.(step.Resumer)
	if !ok {
		return
	}
	for _, s := range p.graph.Steps {
		if !p.run[s] || s.Parent == nil || p.run[s.Parent] || !p.present[s.Parent] {
			continue
		}
		if _, guest := s.Kind.(step.GuestKind); !guest {
			continue
		}
		if _, guest := s.Parent.Kind.(step.GuestKind); !guest {
			continue // the source or another image's output: a first boot
		}
		layer, found, err := e.Store.Lookup(s.Parent.Key)
		if err != nil || !found {
			continue
		}
		sp := p.rows[s]
		if resumes, why := resumer.WillResume(ctx, s.Image, layer); resumes {
			sp.Start = StartResume
			sp.Reasons = append(sp.Reasons, fmt.Sprintf("resumes the VM saved with %s (no boot)", s.Parent.Label()))
		} else {
			sp.Start = StartBoot
			sp.Reasons = append(sp.Reasons, fmt.Sprintf("boots the cached layer of %s: %s", s.Parent.Label(), why))
		}
	}
}

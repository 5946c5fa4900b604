package step

import (
	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
)

// Step is one node of the graph at run time. The plan (engine.StepPlan) is plain data made from it.
type Step struct {
	Addr  Address
	Kind  Kind
	Image *config.Image
	// Config is the part of the configuration the step runs (Instance.Config): a *config.Provisioner, a
	// *config.Output, or nil.
	Config any

	// Parent is the step whose result this one starts from: for the first guest step the source (or the
	// parent image's last guest step), for the next ones the guest step before, for final steps the last.
	Parent *Step
	// Uses are the image's Prepare steps, which a guest step needs to run (the seed, also when resuming
	// from a cached layer, so that cloud-init sees the same instance). They are in a key only when the
	// kind adds them.
	Uses []*Step

	// Key and Inputs are set by the planner.
	Key    state.Key
	Inputs []Input
	// Sensitive is set by the planner when a part of the key held a sensitive value (the step reads a
	// sensitive variable, or its configuration holds one): a guest session saves no VM state from this
	// step on, since the guest's memory may still hold the value (a provisioner's environment never
	// reaches the disk, but it is in RAM).
	Sensitive bool
}

// Label is how the step is shown to users.
func (s *Step) Label() string { return s.Addr.Label() }

// Deps are the steps whose results this one needs to run.
func (s *Step) Deps() []*Step {
	var deps []*Step
	if s.Parent != nil {
		deps = append(deps, s.Parent)
	}
	return append(deps, s.Uses...)
}

// IsGuest tells whether the step runs in the guest session.
func (s *Step) IsGuest() bool { return s.Kind.Class() == Guest }

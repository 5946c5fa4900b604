package engine

import (
	"fmt"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
)

// Kind is what a step does.
type Kind string

// The step kinds, in the order an image runs them.
const (
	KindFetch     Kind = "fetch"
	KindSeed      Kind = "seed"
	KindBoot      Kind = "boot"
	KindProvision Kind = "provision"
	KindCleanup   Kind = "cleanup"
	KindExport    Kind = "export"
	// KindTest boots the image's final disk as a new instance and checks it, after (beside) the exports.
	KindTest Kind = "test"
)

// kindVersions go into every key: bump a kind's version when its implementation makes a different result
// from the same inputs, so that old cache entries stop matching. Cleanup 2: the network handoff to
// systemd-networkd; the text of the test step's checks is in its key itself.
var kindVersions = map[Kind]int{
	KindFetch: 1, KindSeed: 1, KindBoot: 1, KindProvision: 1, KindCleanup: 2, KindExport: 1, KindTest: 1,
}

// IsDisk tells whether the step's result is a disk layer made inside the build VM.
func (k Kind) IsDisk() bool {
	return k == KindBoot || k == KindProvision || k == KindCleanup
}

// Step is one node of the graph.
type Step struct {
	// ID is unique in the configuration and stable across runs: "debian-12-base/provision/motd". The record
	// of the last apply is keyed by it.
	ID    string
	Kind  Kind
	Name  string // the provisioner's or output's name; empty for the other kinds
	Image *config.Image

	// Parent is the step whose disk this one starts from: for boot the fetch (or the parent image's cleanup),
	// for a provisioner or cleanup the previous disk step, for an export and the test the cleanup.
	Parent *Step
	// Seed is the image's seed step, which every disk step needs to boot the VM (also when resuming from a
	// cached layer, so that cloud-init sees the same instance). It is not an input of disk-step keys other
	// than boot's.
	Seed *Step
	// Provisioner and Output point into the configuration for those kinds.
	Provisioner *config.Provisioner
	Output      *config.Output

	// Key and Inputs are set by the planner.
	Key    state.Key
	Inputs []Input
}

// Label is how the step is shown to users: fetch, provision "motd", export "qcow2".
func (s *Step) Label() string {
	if s.Name != "" {
		return fmt.Sprintf("%s %q", s.Kind, s.Name)
	}
	return string(s.Kind)
}

// Deps are the steps whose results this one needs to run.
func (s *Step) Deps() []*Step {
	var deps []*Step
	if s.Parent != nil {
		deps = append(deps, s.Parent)
	}
	if s.Seed != nil {
		deps = append(deps, s.Seed)
	}
	return deps
}

package engine

import (
	"context"

	"gitlab.com/imgform/imgform/config"
	"gitlab.com/imgform/imgform/state"
)

// GuestRunner runs the disk steps of one image that are to run, in order, in one VM session: a full build
// boots once, and a build that resumes from a cached layer boots that layer. Implementations live in
// steps/ (QEMU, SSH); the engine only hands out layers and records results.
type GuestRunner interface {
	Run(ctx context.Context, job *GuestJob) error
}

// Disk is a disk image file.
type Disk struct {
	Path   string
	Format string // qcow2 or raw
}

// GuestJob is one VM session.
type GuestJob struct {
	Image     *config.Image
	ConfigDir string
	// Base is the disk the first step starts from: the source, the parent image's result or the last
	// cached layer. It must not be written to.
	Base Disk
	// Seed is the path of the cidata ISO. It is attached on every boot, also when resuming, so that
	// cloud-init sees the same instance and does not run its per-instance modules again.
	Seed string
	// BuildKey is the private key (OpenSSH PEM) authorized in Base's chain for BuildUser.
	BuildKey  []byte
	BuildUser string
	// HostKeys are the guest's SSH host keys recorded with Base's layer (nil when the first step is boot:
	// cloud-init prints the new keys on the console then). Write them as HostKeysFile into every layer.
	HostKeys []byte
	// WorkDir is an empty folder for the VM's state (control socket, console log), removed after Run.
	WorkDir string
	// Steps are the disk steps to run, in order; the first one's parent is Base.
	Steps []*StepPlan
	// Begin opens the store folder for a step's layer, before the step starts: the VM writes the layer as
	// LayerFile in w.Dir(), with its backing file given relative to that folder (the folder is renamed into
	// place by Commit, at the same depth of the store, so a relative path stays right). The next layer may
	// be begun before this one is committed, naming it by its w.FinalPath(LayerFile).
	Begin func(step *StepPlan) (*state.Writer, error)
	// Commit publishes a step's layer as soon as the step is over, so that a crash later in the session
	// keeps it, and returns where it now is. The layer must not change afterwards (it may stay open
	// read-only as the backing file of the next layer). Abort the writer of a step that did not finish.
	Commit func(step *StepPlan, w *state.Writer) (Disk, error)
	// Done says a step's work in the guest is over (its time is measured up to here); Commit follows.
	Done func(step *StepPlan)
	// Started, Output and Progress report to the user.
	Started  func(step *StepPlan)
	Output   func(step *StepPlan, line string)
	Progress func(step *StepPlan, phase string, done, total int64)
	// Message reports a warning, such as the fall back from KVM to TCG.
	Message func(text string)
	// Redact removes sensitive values from any text before it is logged.
	Redact func(string) string
}

// LayerFile is the name of the qcow2 layer in a disk step's object; BuildKeyFile holds the build key.
const (
	LayerFile    = "disk.qcow2"
	BuildKeyFile = "build_key"
	SourceFile   = "disk"
	SeedFile     = "seed.iso"
	HostKeysFile = "host_keys"
)

package engine

import (
	"context"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
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

// Tester boots an image's final disk as a brand-new instance and checks it (the test step). The
// implementation lives in steps/vm; the checks themselves in steps/smoke.
type Tester interface {
	Test(ctx context.Context, job *TestJob) (*TestReport, error)
}

// TestJob is one test of an image's result.
type TestJob struct {
	Image     *config.Image
	ConfigDir string
	// Disk is the final layer every output of the image was converted from. It must not be written to:
	// the test boots it through a throwaway overlay in WorkDir.
	Disk Disk
	// WorkDir is an empty folder for the overlay, the test seed and the VM's state, removed after Test.
	WorkDir string
	// BuildUser and BuildKey (OpenSSH PEM) are what the build logged in with: the instance must refuse them.
	BuildUser string
	BuildKey  []byte
	// BuildHostKeys (as in HostKeysFile) and BuildMachineID are the build's identity, which the instance must
	// not have; empty when the layer did not record them.
	BuildHostKeys  []byte
	BuildMachineID string
	// Output reports one line of what the test does, such as a check's result; Message a warning.
	Output  func(line string)
	Message func(text string)
	// Redact removes sensitive values from any text before it is shown or stored.
	Redact func(string) string
}

// Check statuses of a TestReport.
const (
	CheckPassed  = "passed"
	CheckFailed  = "failed"
	CheckSkipped = "skipped"
)

// CheckResult is the outcome of one check of a test: a built-in check ("network") or a test block
// ("test nginx"). Detail is the check's output on failure or why it was skipped, redacted and cut to its
// last lines. It goes into the manifest next to the image: it must never hold a secret.
type CheckResult struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"`
	Detail  string  `json:"detail,omitempty"`
	Seconds float64 `json:"seconds"`
}

// TestReport is every check of a test, in the order they ran.
type TestReport struct {
	Checks []CheckResult `json:"checks"`
}

// Failed returns the checks that failed.
func (r *TestReport) Failed() []CheckResult {
	if r == nil {
		return nil
	}
	var out []CheckResult
	for _, c := range r.Checks {
		if c.Status == CheckFailed {
			out = append(out, c)
		}
	}
	return out
}

// MachineIDFile holds the guest's /etc/machine-id of the session that wrote a layer; TestReportFile the
// report of a passed test in the test step's object.
const (
	MachineIDFile  = "machine_id"
	TestReportFile = "report.json"
)

package step

import (
	"context"
	"io"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// Files in the store's objects that more than one kind reads.
const (
	// LayerFile is the qcow2 layer of a guest step.
	LayerFile = "disk.qcow2"
	// BuildKeyFile holds the build key (OpenSSH PEM), in the seed's object and with every layer built with it.
	BuildKeyFile = "build_key"
	// SeedFile is the cidata ISO in the seed's object.
	SeedFile = "seed.iso"
	// HostKeysFile holds the guest's SSH host keys of the session that wrote a layer, to pin on a resume.
	HostKeysFile = "host_keys"
	// MachineIDFile holds the guest's /etc/machine-id of the session that wrote a layer.
	MachineIDFile = "machine_id"
)

// BuildUserName is the account the build logs in with; cleanup removes it.
const BuildUserName = "imgform-build"

// Disk is a disk image file.
type Disk struct {
	Path   string
	Format string // qcow2 or raw
}

// Machines runs VMs for the kinds that need one: the guest session of an image's guest steps, and a new
// instance of an image for its test. internal/steps/vm implements it with QEMU and SSH.
type Machines interface {
	RunSession(ctx context.Context, job *SessionJob) error
	Test(ctx context.Context, job *TestJob) (*TestReport, error)
}

// StateFile is the file of a layer's object that holds the VM state saved with it (internal/steps/vm),
// read only through Object.Open, which checks it as it goes: a check of the chain before a session skips it.
const StateFile = "vmstate.zst"

// Resumer is a Machines that can say, before an apply, whether a guest session that starts from a cached
// layer will resume the VM state saved with it (true) or boot the layer, and why.
type Resumer interface {
	WillResume(ctx context.Context, img *config.Image, layer *state.Object) (bool, string)
}

// SessionJob is one guest session: the guest steps of one image that are to run, in order. A full build
// boots once; a build that resumes from a cached layer boots that layer.
type SessionJob struct {
	Image     *config.Image
	ConfigDir string
	// Base is the disk the first step starts from (the source, the parent image's result or the last cached
	// layer) and BaseObject the store object holding it. It must not be written to.
	Base       Disk
	BaseObject *state.Object
	// Uses are the objects of the first step's Uses steps (the seed, with SeedFile and BuildKeyFile). The
	// seed is attached on every boot, also when resuming, so that cloud-init sees the same instance.
	Uses []*state.Object
	// Root is the store's folder: every layer of Base's chain must live below it (qemu.CheckChainWithin).
	Root string
	// WorkDir is an empty folder for the VM's state (control socket, console log), removed after the run.
	WorkDir string
	// Steps are the guest steps to run, in order; the first one's parent is Base.
	Steps []*Step
	// Begin opens the store folder for a step's layer, before the step starts: the VM writes the layer as
	// LayerFile in w.Dir(), with its backing file given relative to that folder (the folder is renamed into
	// place by Commit, at the same depth of the store, so a relative path stays right). The next layer may
	// be begun before this one is committed, naming it by its w.FinalPath(LayerFile).
	Begin func(s *Step) (*state.Writer, error)
	// Commit publishes a step's layer as soon as the step is over, so that a crash later in the session
	// keeps it. The layer must not change afterwards (it may stay open read-only as the backing file of the
	// next layer). Abort the writer of a step that did not finish.
	Commit func(s *Step, w *state.Writer) error
	// Started, Done (the step's work in the guest is over; its time is measured up to here, Commit
	// follows), Output and Progress report to the user.
	Started  func(s *Step)
	Done     func(s *Step)
	Output   func(s *Step, line string)
	Progress func(s *Step, phase string, done, total int64)
	// Message reports a warning, such as the fall back from KVM to TCG; Info a note, such as a saved VM
	// state's size (nil: none wanted).
	Message func(text string)
	Info    func(text string)
	// Redact removes sensitive values from any text before it is logged.
	Redact func(string) string
	// Shared holds what keying worked out, such as the digests of the files a step uploads.
	Shared *Shared
	// KeepOnError, when set, is called after a step failed with the VM still running and a way to log in
	// to it (an ssh command line); the VM stops when it returns (apply -on-error=keep).
	KeepOnError func(ctx context.Context, failed *Step, err error, login string)
}

// Shell runs commands in the guest and copies files into it (internal/steps/ssh.Client).
type Shell interface {
	Run(ctx context.Context, cmd string, opts ssh.RunOptions) (int, error)
	Upload(ctx context.Context, r io.Reader, dest string, opts ssh.UploadOptions) error
}

// GuestEnv is what a guest step's run may use.
type GuestEnv struct {
	Shell     Shell
	ConfigDir string
	BuildUser string
	// Output reports one line the step printed; Redact removes sensitive values from a text.
	Output func(line string)
	Redact func(string) string
	// Shared holds what keying worked out, such as the digests of the files the step uploads.
	Shared *Shared
	// Keep returns the path of a new file, named name, to be kept with the step's result: it is committed
	// with the step's layer (a Downloader's files).
	Keep func(name string) (string, error)
}

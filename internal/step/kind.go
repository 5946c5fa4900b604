package step

import (
	"context"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
)

// Class says where a kind's steps sit in an image and where they run.
type Class int

const (
	// Source steps make the image's base disk on the host (fetch). A derived image has none: it starts
	// from its parent image's last guest step.
	Source Class = iota
	// Prepare steps run on the host before the guest session, which needs their results (the seed).
	Prepare
	// Guest steps run in order inside one guest session; each result is a disk layer over the one before.
	Guest
	// Final steps run on the host from the image's last layer, beside each other (export, test).
	Final
)

// Kind is one kind of step. Implementations are stateless values; per-apply state goes through Env.
type Kind interface {
	// Name is the kind's name in addresses, plans and records: "fetch".
	Name() string
	// Version goes into every key of the kind: bump it when the implementation makes a different result
	// from the same inputs (the text of a guest script is in the key itself and needs no bump).
	Version() int
	Class() Class
	// Instances lists the steps the kind adds to an image, in order: a name ("" for a kind with one step
	// per image) and the part of the configuration the step runs (a provisioner, an output; may be nil).
	// None leaves the kind out of the image.
	Instances(img *config.Image) []Instance
	// Key adds everything that can change the step's result to b (see key.go for what stays out).
	Key(ctx context.Context, kc *KeyContext, s *Step, b *KeyBuilder) error
}

// Instance is one step a kind adds to an image.
type Instance struct {
	Name   string
	Config any
}

// Explainer is implemented by kinds whose own inputs need words in a plan ("the source image changed").
// It returns "" for an input it does not know; the engine explains step, file, variable and kind inputs.
type Explainer interface {
	Explain(in Input) string
}

// HostKind is a kind whose steps run on the host (Source, Prepare and Final classes).
type HostKind interface {
	Kind
	Run(ctx context.Context, env *Env, s *Step) (Result, error)
}

// GuestKind is a kind whose steps run in the guest session (Guest class).
type GuestKind interface {
	Kind
	// RunGuest does the step's work in the running guest; the session cuts the step's layer afterwards.
	RunGuest(ctx context.Context, g *GuestEnv, s *Step) error
}

// Downloader is implemented by guest kinds whose steps copy files out of the guest (a provisioner's
// file blocks with direction = "download"): RunGuest keeps each one with the step's layer in the store
// (GuestEnv.Keep), so it is cached, pushed and pulled with it, and every apply writes it to its Path when the
// file there is missing or differs.
type Downloader interface {
	Downloads(s *Step) []Download
}

// Download is one file a step copies out of the guest.
type Download struct {
	// File names it in the step's object; Source is its path in the guest.
	File, Source string
	// Path is where apply writes it, relative to the configuration folder unless absolute.
	Path string
}

// Booter is implemented by the guest kind that starts a new layer chain from a base disk: its session
// boots with the seed's build key, pins the host keys cloud-init prints on the console and grows the disk
// to the machine's disk_size. Any other first step of a session resumes from a cached layer.
type Booter interface {
	StartsChain() bool
}

// PowerOffer is implemented by the guest kind whose script powers the guest off at its end (cleanup): the
// session then waits for QEMU to exit instead of shutting it down.
type PowerOffer interface {
	PowersOff() bool
}

// DiskKind is implemented by kinds whose stored result is a disk that is not a qcow2 layer (the fetched
// source, in the format it came in). Guest steps' results are LayerFile in qcow2.
type DiskKind interface {
	Disk(obj *state.Object) (Disk, error)
}

// FileKind is implemented by kinds whose result is a file outside the store (an export): the step is
// cached when the record of the last apply wrote that file for the same key and it is unchanged.
type FileKind interface {
	// OutputFile is the file's path as written in the configuration (relative to its folder).
	OutputFile(s *Step) string
	// ManifestEntry describes the file for the image's manifest, from the step's result data when it ran
	// in this apply (data non-nil), or from the record.
	ManifestEntry(s *Step, out *state.OutputRecord, data any) ManifestOutput
}

// Publisher is implemented by a FileKind whose files can also be pushed to registries: once the image passed
// its test (or has none), apply publishes each target and remembers it in the record, so an unchanged file
// is not published again.
type Publisher interface {
	PublishTargets(s *Step) []PublishTarget
}

// PublishTarget is one registry reference a file goes to.
type PublishTarget struct {
	// Kind is PublishArtifact or PublishContainerDisk.
	Kind string
	// Ref is oci://HOST[:PORT]/REPOSITORY:TAG; Where says where the configuration names it (file:line:col).
	Ref, Where string
	// Format and Compression describe the file ("qcow2", "zstd", ...).
	Format, Compression string
}

// Kinds of PublishTarget.
const (
	PublishArtifact      = "artifact"
	PublishContainerDisk = "containerdisk"
)

// TestedLayerAttr is the attribute of a Verifier's object that holds the SHA256 of the layer it tested: the
// engine counts the report only while no other build of that layer is in the store.
const TestedLayerAttr = "tested_layer_sha256"

// Verifier is implemented by the kind whose steps prove an image works (the test): its result data is a
// *TestReport, the outputs of an image whose verifier did not pass are marked unverified, and apply
// -skip-tests leaves its steps out.
type Verifier interface {
	// CachedReport reads the report a passed step stored in its object.
	CachedReport(obj *state.Object) (*TestReport, error)
}

// Refresher is implemented by kinds whose steps carry their own freshness rule (a provisioner's
// refresh_every): a result older than RefreshEvery (0: never) is built again, and everything after it.
// The image's refresh_every applies to its first guest step, whatever its kind.
type Refresher interface {
	RefreshEvery(s *Step) time.Duration
}

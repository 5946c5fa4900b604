package step

import (
	"context"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/steps/export"
)

// Result is what a host step's run made.
type Result struct {
	// Built is false when another apply made the result while this one waited for its lock: the step then
	// counts as cached, not done.
	Built bool
	// Output is the file a FileKind step wrote.
	Output *state.OutputRecord
	// Data is the kind's own result for later use in the same apply: an export's *export.Result, a
	// Verifier's *TestReport (set also when its run failed with checks that failed).
	Data any
}

// ManifestOutput is one output in an image's manifest.
type ManifestOutput = export.ManifestOutput

// Env is what a host step's run may use: the configuration, the store, and the apply's reporting.
type Env struct {
	Config *config.Config
	Store  *state.Store
	// Shared holds what keying worked out (KeyContext.Shared).
	Shared *Shared
	// Machines runs VMs; nil when this imgform has none.
	Machines Machines
	// LockOptions describes a wait for a lock held by another apply.
	LockOptions func(purpose string) state.LockOptions
	// VerifyChain checks the content of obj and of every object below it, once per apply.
	VerifyChain func(ctx context.Context, obj *state.Object) error
	// SetData hands the step's result data to the apply before the run returns (a failed test's report).
	SetData func(data any)
	// Progress, Output and Warn report to the user; texts are redacted by the caller of Env.
	Progress func(phase string, done, total int64)
	Output   func(line string)
	Warn     func(text string)
}

// Path resolves a path of the configuration against its folder.
func (e *Env) Path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(e.Config.Dir, p)
}

// The resolved checksum of an image's source ("type:hex", "" when none is declared) is worked out by the
// source kind while keying and goes into the image's manifest.
func sourceChecksumName(image string) string { return "source checksum/" + image }

// SetSourceChecksum stores the resolved checksum of an image's source.
func (sh *Shared) SetSourceChecksum(image, sum string) { sh.Set(sourceChecksumName(image), sum) }

// SourceChecksum returns the resolved checksum of an image's source and whether it was resolved.
func (sh *Shared) SourceChecksum(image string) (string, bool) {
	v, ok := sh.Get(sourceChecksumName(image))
	s, _ := v.(string)
	return s, ok
}

// Package export is the step kind of one output block: the image's last layer converted to the output's
// format and compression by internal/steps/export, written atomically next to the configuration.
package export

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/fsutil"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	exportlib "gitlab.com/imgform/imgform/internal/steps/export"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

// Kind is the export kind.
type Kind struct{}

var (
	_ step.HostKind = Kind{}
	_ step.FileKind = Kind{}
)

func (Kind) Name() string      { return "export" }
func (Kind) Version() int      { return 1 }
func (Kind) Class() step.Class { return step.Final }

// Instances: one step per output block.
func (Kind) Instances(img *config.Image) []step.Instance {
	out := make([]step.Instance, len(img.Outputs))
	for i, o := range img.Outputs {
		out[i] = step.Instance{Name: o.Name, Config: o}
	}
	return out
}

func output(s *step.Step) *config.Output { return s.Config.(*config.Output) }

// Key: the final layer and the format, compression and level. The output's path is out: moving an output
// writes the same bytes elsewhere (the plan says so from the record).
func (Kind) Key(_ context.Context, _ *step.KeyContext, s *step.Step, b *step.KeyBuilder) error {
	b.Step(s.Parent)
	o := output(s)
	b.Variables(o.VarRefs)
	return b.Config("output", struct {
		Format      string `json:"format"`
		Compression string `json:"compression"`
		Level       int    `json:"level"`
	}{o.Format, o.Compression, o.Level})
}

// PublishTargets are the output's publish and publish_container_disk references.
func (Kind) PublishTargets(s *step.Step) []step.PublishTarget {
	o := output(s)
	var out []step.PublishTarget
	if o.Publish != "" {
		out = append(out, step.PublishTarget{Kind: step.PublishArtifact, Ref: o.Publish, Where: o.PublishRange.String(),
			Format: o.Format, Compression: o.Compression})
	}
	if o.PublishContainerDisk != "" {
		out = append(out, step.PublishTarget{Kind: step.PublishContainerDisk, Ref: o.PublishContainerDisk,
			Where: o.PublishContainerDiskRange.String(), Format: o.Format, Compression: o.Compression})
	}
	return out
}

// OutputFile is the output's path as written in the configuration.
func (Kind) OutputFile(s *step.Step) string { return output(s).Path }

// ManifestEntry describes the output from the export's result, or from the record of an earlier apply.
func (Kind) ManifestEntry(s *step.Step, rec *state.OutputRecord, data any) step.ManifestOutput {
	o := output(s)
	if res, ok := data.(*exportlib.Result); ok && res != nil {
		return res.ManifestOutput(o.Name, o.Path)
	}
	m := exportlib.ManifestOutput{Name: o.Name, Path: o.Path, Format: o.Format, Compression: o.Compression, Level: o.Level}
	if rec != nil {
		m.Size, m.SHA256 = rec.Size, rec.SHA256
	}
	return m
}

// Run writes the output from the image's final layer. The exporter writes atomically, so a failed or
// cancelled export leaves the previous file (or none), never a partial one. It always builds: the file is
// not in the store, so no other apply makes it meanwhile.
func (Kind) Run(ctx context.Context, env *step.Env, s *step.Step) (step.Result, error) {
	lock, err := env.Store.LockKey(ctx, s.Key, env.LockOptions(fmt.Sprintf("export %s of image %s", s.Addr.Name, s.Image.Name)))
	if err != nil {
		return step.Result{}, err
	}
	defer func() { _ = lock.Unlock() }()
	obj, ok, err := env.Store.Lookup(s.Parent.Key)
	if err != nil {
		return step.Result{}, err
	}
	if !ok {
		return step.Result{}, fmt.Errorf("the final layer of image %q is not in the store", s.Image.Name)
	}
	// The layer is the result of earlier steps: check its content before an output is made from it, so a
	// damaged cache entry is never copied into an image.
	if err := env.VerifyChain(ctx, obj); err != nil {
		return step.Result{}, fmt.Errorf("a cached layer of image %q is damaged (%w); run imgform cache verify -remove and apply again", s.Image.Name, err)
	}
	if err := qemu.CheckChainWithin(obj.Path(step.LayerFile), env.Store.Dir()); err != nil {
		return step.Result{}, fmt.Errorf("the final layer of image %q: %w", s.Image.Name, err)
	}
	o := output(s)
	dest := env.Path(o.Path)
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return step.Result{}, err
	}
	// A killed export left its partial file next to the output; an export of the same output replaces it.
	if _, err := fsutil.RemoveStaleTemps(dest); err != nil {
		env.Warn(fmt.Sprintf("could not remove what an interrupted export left: %v", err))
	}
	// The flattened image between QEMU and zstd goes to a work folder of the cache, which the next apply
	// clears if this one is killed, rather than into the user's output folder.
	work, err := env.Store.NewWorkDir("export-")
	if err != nil {
		return step.Result{}, err
	}
	defer func() { _ = work.Remove() }()
	res, err := exportlib.Export(ctx, exportlib.Request{
		Source: obj.Path(step.LayerFile), Format: o.Format, Compression: o.Compression, Level: o.Level, Dest: dest,
		TempDir: work.Path(), Progress: env.Progress,
	})
	if err != nil {
		return step.Result{}, err
	}
	fi, err := os.Stat(dest)
	if err != nil {
		return step.Result{}, err
	}
	out := &state.OutputRecord{Name: o.Name, Path: o.Path, SHA256: res.SHA256, Size: fi.Size(), ModTime: fi.ModTime(), Key: s.Key}
	return step.Result{Built: true, Output: out, Data: &res}, env.Store.Touch(s.Parent.Key)
}

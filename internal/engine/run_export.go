package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/steps/export"
)

// runExport writes one output from the image's final layer. The exporter writes atomically, so a failed or
// cancelled export leaves the previous file (or none), never a partial one.
func (a *applier) runExport(ctx context.Context, sp *StepPlan) error {
	s := sp.step
	lock, err := a.e.Store.LockKey(ctx, s.Key, a.lockOptions(fmt.Sprintf("export %s of image %s", s.Name, s.Image.Name)))
	if err != nil {
		return err
	}
	defer func() { _ = lock.Unlock() }()
	obj, ok, err := a.e.Store.Lookup(s.Parent.Key)
	if err != nil || !ok {
		return fmt.Errorf("the final layer of image %q is not in the store: %v", s.Image.Name, err)
	}
	// The layer is the result of earlier steps: check its content before an output is made from it, so a
	// damaged cache entry is never copied into an image.
	if err := a.verifyChain(ctx, obj); err != nil {
		return fmt.Errorf("a cached layer of image %q is damaged (%w); run imgform cache verify -remove and apply again", s.Image.Name, err)
	}
	dest := outputPath(a.cfg, s.Output)
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	// A killed export left its partial file next to the output; an export of the same output replaces it.
	if _, err := state.RemoveStaleTemps(dest); err != nil {
		a.e.hooks().Message(LevelWarn, fmt.Sprintf("could not remove what an interrupted export left: %v", err))
	}
	// The flattened image between QEMU and zstd goes to a work folder of the cache, which the next apply
	// clears if this one is killed, rather than into the user's output folder.
	work, err := a.e.Store.NewWorkDir("export-")
	if err != nil {
		return err
	}
	defer func() { _ = work.Remove() }()
	o := s.Output
	res, err := export.Export(ctx, export.Request{
		Source: obj.Path(LayerFile), Format: o.Format, Compression: o.Compression, Level: o.Level, Dest: dest,
		TempDir:  work.Path(),
		Progress: func(phase string, done, total int64) { a.e.hooks().StepProgress(sp, phase, done, total) },
	})
	if err != nil {
		return err
	}
	fi, err := os.Stat(dest)
	if err != nil {
		return err
	}
	a.mu.Lock()
	r := a.results[s]
	if r == nil {
		r = &stepResult{}
		a.results[s] = r
	}
	r.export = &res
	r.output = &state.OutputRecord{Name: s.Name, Path: s.Output.Path, SHA256: res.SHA256, Size: fi.Size(), ModTime: fi.ModTime(), Key: s.Key}
	a.mu.Unlock()
	return a.e.Store.Touch(s.Parent.Key)
}

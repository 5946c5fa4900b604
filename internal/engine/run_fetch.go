package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/steps/fetch"
)

// sourceInfo is kept next to a fetched disk: what it is, so later steps need not ask qemu-img again.
type sourceInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual_size"`
	Checksum    string `json:"checksum"`
}

const sourceInfoFile = "disk.json"

func (a *applier) lockOptions(purpose string) state.LockOptions {
	return state.LockOptions{Purpose: purpose, OnEvent: a.e.lockEvent}
}

// runFetch downloads (or copies) the source into the store and checks that it is a disk image that fits
// the machine's disk_size. built is false when another apply fetched it while this one waited for the lock.
func (a *applier) runFetch(ctx context.Context, sp *StepPlan) (built bool, err error) {
	s := sp.step
	img := s.Image
	loc := img.Source.URL
	if loc == "" {
		loc = img.Source.Path
	}
	sum := a.p.kc.checksums[img.Name]
	_, built, err = a.e.Store.GetOrBuild(ctx, s.Key, state.Info{Kind: string(KindFetch), Image: img.Name, Step: s.ID},
		a.lockOptions(fmt.Sprintf("fetch of image %s", img.Name)),
		func(ctx context.Context, w *state.Writer) error {
			dest, err := w.Path(SourceFile)
			if err != nil {
				return err
			}
			res, err := a.p.kc.fetcher.Fetch(ctx, fetch.Request{
				URL: loc, Checksum: sum, BaseDir: a.cfg.Dir, Dest: dest,
				Progress: func(done, total int64) { a.e.hooks().StepProgress(sp, "download", done, total) },
			})
			if err != nil {
				return err
			}
			info, err := inspectDisk(ctx, dest)
			if err != nil {
				return fmt.Errorf("source %s: %w", loc, err)
			}
			if ds := int64(img.Machine.DiskSize); ds != 0 && ds < info.VirtualSize {
				return configErrorf(img.Machine.DiskSizeRange, "disk_size %s is smaller than the source image's virtual size of %d bytes (%s); shrinking would destroy data: set disk_size to at least that",
					img.Machine.DiskSize, info.VirtualSize, loc)
			}
			meta, err := json.Marshal(sourceInfo{Format: info.Format, VirtualSize: info.VirtualSize, Checksum: res.Checksum.String()})
			if err != nil {
				return err
			}
			return w.WriteFile(sourceInfoFile, meta, 0o644)
		})
	return built, err
}

// sourceDisk returns the disk of a fetch object.
func sourceDisk(obj *state.Object) (Disk, error) {
	b, err := os.ReadFile(obj.Path(sourceInfoFile))
	if err != nil {
		return Disk{}, err
	}
	var si sourceInfo
	if err := json.Unmarshal(b, &si); err != nil {
		return Disk{}, fmt.Errorf("%s: %w", obj.Path(sourceInfoFile), err)
	}
	return Disk{Path: obj.Path(SourceFile), Format: si.Format}, nil
}

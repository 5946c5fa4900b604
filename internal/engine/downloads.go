package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/fsutil"
	"gitlab.com/imgform/imgform/internal/remote"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// writeDownloads writes the files that guest steps copied out of the guest (step.Downloader) to their
// paths, for every image the apply planned (not those -only or -except left out). A file is kept in its
// step's layer object, so it is cached with the step: the file at its path is written when it is missing
// or differs, also when the step itself was cached. A runner that took the step from the remote cache
// without its layer (it needed only the outputs) pulls just that file of the object.
func (a *applier) writeDownloads(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	var errs []error
	for _, ip := range a.p.plan.Images {
		if ip.LeftOut {
			continue
		}
		for _, s := range a.p.graph.ImageSteps(ip.Name) {
			dk, ok := s.Kind.(step.Downloader)
			if !ok {
				continue
			}
			dls := dk.Downloads(s)
			if len(dls) == 0 || !a.hasResult(s) {
				continue
			}
			if err := a.writeStepDownloads(ctx, s, dls); err != nil {
				errs = append(errs, fmt.Errorf("the downloads of %s of image %q: %w", s.Label(), s.Image.Name, a.cfg.RedactError(err)))
			}
		}
	}
	return errors.Join(errs...)
}

// hasResult tells whether this apply counts the step as done: it ran, was cached or pulled, or the plan
// found it cached (and it was not needed, so it has no result entry).
func (a *applier) hasResult(s *step.Step) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.results[s]
	if r == nil {
		return a.p.present[s] || a.p.hasRemote(s)
	}
	switch r.status {
	case StatusDone, StatusCached, StatusPulled:
		return true
	}
	return false
}

// writeStepDownloads writes one step's downloads from its object in the store or, when the store lacks it,
// from the remote cache: the plan's remote entry (lookupRemote) gives the files' digests and where they are.
func (a *applier) writeStepDownloads(ctx context.Context, s *step.Step, dls []step.Download) error {
	obj, local, err := a.e.Store.Lookup(s.Key)
	if err != nil {
		return err
	}
	var meta *state.Meta
	var entry *remote.Entry
	switch {
	case local:
		meta = &obj.Meta
	case a.e.Remote != nil && a.p.hasRemote(s):
		e := a.p.remote[s]
		meta, entry = &e.Meta, &e
	}
	var errs []error
	for _, dl := range dls {
		if err := a.writeDownload(ctx, s, dl, meta, obj, entry); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dl.Path, err))
		}
	}
	return errors.Join(errs...)
}

// writeDownload writes one download to its path, atomically and checked against its sha256 in meta,
// unless the file there holds it already: from obj when the store has the step's object, else pulled alone
// from the remote object entry. With neither (meta nil), a missing file gets a warning.
func (a *applier) writeDownload(ctx context.Context, s *step.Step, dl step.Download, meta *state.Meta, obj *state.Object, entry *remote.Entry) (err error) {
	dest := outputPath(a.cfg, dl.Path)
	fi, serr := os.Stat(dest)
	switch {
	case serr == nil && fi.IsDir():
		return fmt.Errorf("is a folder: end the destination with / to write %s into it", filepath.Base(dl.Source))
	case meta == nil:
		if serr != nil {
			a.warnOnce(fmt.Sprintf("%s of image %q is no longer in the cache, so %s (its download of %s) cannot be written; "+
				"apply -replace=%s builds it again", s.Label(), s.Image.Name, dl.Path, dl.Source, s.Addr.Ref()))
		}
		return nil
	}
	sum, ok := meta.File(dl.File)
	if !ok {
		return fmt.Errorf("the cached result %s holds no file %q", s.Key.Short(), dl.File)
	}
	if same, err := holds(ctx, dest, sum); err != nil || same {
		return err
	}
	// The store's reader checks the sha256 as it reads; PullFile checked the pulled file.
	var r io.ReadCloser
	via := ""
	if obj != nil {
		r, err = obj.Open(dl.File)
	} else {
		var work *state.WorkDir
		if work, err = a.e.Store.NewWorkDir("download-"); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, work.Remove()) }()
		if err = a.e.Remote.PullFile(ctx, *entry, dl.File, work.Path()); err != nil {
			return err
		}
		r, err = os.Open(filepath.Join(work.Path(), dl.File))
		via = "; pulled from the remote cache"
	}
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	if err := writeAtomic(dest, r); err != nil {
		return err
	}
	a.e.hooks().Message(LevelInfo, fmt.Sprintf("wrote %s (%s, downloaded from the guest by %s%s)", dl.Path, dl.Source, s.Addr.Ref(), via))
	return nil
}

// holds tells whether the file at path has the size and sha256 of sum (false when there is none).
func holds(ctx context.Context, path string, sum state.FileSum) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != sum.Size {
		return false, nil
	}
	got, _, err := fsutil.HashFile(ctx, path)
	if err != nil {
		return false, err
	}
	return got == sum.SHA256, nil
}

// writeAtomic replaces dest with what r holds (mode 0644), creating its folder, and first removes the temp
// files of writers of dest that were killed.
func writeAtomic(dest string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	if _, err := fsutil.RemoveStaleTemps(dest); err != nil {
		return err
	}
	f, err := fsutil.CreateAtomic(dest, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(r); err != nil {
		return errors.Join(err, f.Abort())
	}
	return f.Commit()
}

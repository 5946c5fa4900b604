package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/remote"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/export"
)

// publishOutputs pushes the outputs that name registries (step.Publisher) once their image passed its test
// (or has none): an output that is not known to work is never published. A file already published to a
// reference, as the record says, is not read again, so a no-op apply stays a no-op. A failed publish fails
// the apply: the user asked for it. Call after writeManifests, with a.ckpt held.
func (a *applier) publishOutputs(ctx context.Context) error {
	var errs []error
	for _, ip := range a.p.plan.Images {
		v := a.verification(a.p.graph.Verifier(ip.Name))
		for _, s := range a.p.graph.ImageSteps(ip.Name) {
			pk, ok := s.Kind.(step.Publisher)
			if !ok {
				continue
			}
			targets := pk.PublishTargets(s)
			out := a.currentOutput(s)
			if len(targets) == 0 || out == nil {
				continue
			}
			if v.Status != export.VerificationPassed && v.Status != export.VerificationDisabled {
				a.e.hooks().Message(LevelWarn, fmt.Sprintf("%s is not published: the test of image %q is %s", out.Path, ip.Name, v.Status))
				continue
			}
			published := map[string]string{}
			if old := recordedOutput(a.p.record, s); old != nil && old.SHA256 == out.SHA256 {
				maps.Copy(published, old.Published)
			}
			for _, tg := range targets {
				id := tg.Kind + " " + tg.Ref
				if _, done := published[id]; done {
					continue
				}
				digest, err := a.publish(ctx, s, out, tg)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: publishing %s to %s: %w", tg.Where, out.Path, tg.Ref, err))
					continue
				}
				published[id] = digest
				a.e.hooks().Message(LevelInfo, fmt.Sprintf("published %s to %s (%s)", out.Path, tg.Ref, digest))
			}
			a.mu.Lock()
			a.result(s).published = published
			a.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

// currentOutput is the output file of a FileKind step after this apply: written now, or kept from before.
func (a *applier) currentOutput(s *step.Step) *state.OutputRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.results[s]; r != nil && r.output != nil {
		return r.output
	}
	if a.p.present[s] {
		return recordedOutput(a.p.record, s)
	}
	return nil
}

func (a *applier) publish(ctx context.Context, s *step.Step, out *state.OutputRecord, tg step.PublishTarget) (string, error) {
	ref, err := remote.ParsePublishRef(tg.Ref)
	if err != nil {
		return "", err
	}
	opts := a.e.PublishOptions
	opts.Version = a.e.ToolVersion
	path := outputPath(a.cfg, out.Path)
	info := remote.PublishInfo{Image: s.Image.Name, Source: os.Getenv("CI_PROJECT_URL"), Revision: os.Getenv("CI_COMMIT_SHA")}
	var res remote.PublishResult
	switch tg.Kind {
	case step.PublishArtifact:
		res, err = remote.Publish(ctx, ref, opts, remote.PublishFiles{PublishInfo: info, Disk: path,
			Format: tg.Format, Compression: tg.Compression,
			Manifest: filepath.Join(filepath.Dir(path), s.Image.Name+".manifest.json")})
	case step.PublishContainerDisk:
		work, werr := a.e.Store.NewWorkDir("publish-")
		if werr != nil {
			return "", werr
		}
		defer func() { _ = work.Remove() }()
		res, err = remote.PublishContainerDisk(ctx, ref, opts, remote.ContainerDisk{PublishInfo: info, Path: path,
			Format: tg.Format, Compression: tg.Compression, TempDir: work.Path()})
	default:
		return "", fmt.Errorf("unknown publish kind %q", tg.Kind)
	}
	if err != nil {
		return "", err
	}
	return res.Digest, nil
}

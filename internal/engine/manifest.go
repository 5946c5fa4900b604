package engine

import (
	"fmt"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/export"
)

// writeManifests writes SHA256SUMS and <image>.manifest.json next to the outputs of every image whose
// exports ran in this apply, or whose test finished in it, once all its outputs are there, and again when
// the verification changes (the test usually ends after the exports). Both files are written atomically;
// the manifest holds names, paths, digests and check results only. Outputs whose test did not pass are
// listed in SHA256SUMS as "# unverified:" comments (steps/export.SumEntry).
func (a *applier) writeManifests() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ip := range a.p.plan.Images {
		var files []*step.Step
		test := a.p.graph.Verifier(ip.Name)
		tr := a.results[test]
		ran := test != nil && tr != nil && (tr.data != nil || tr.status == StatusFailed)
		complete := true
		for _, s := range a.p.graph.ImageSteps(ip.Name) {
			if _, ok := s.Kind.(step.FileKind); !ok {
				continue
			}
			files = append(files, s)
			r := a.results[s]
			switch {
			case r != nil && r.output != nil:
				ran = true
			case a.p.present[s]:
			default:
				complete = false
			}
		}
		if !ran || !complete || len(files) == 0 {
			continue
		}
		v := a.verification(test)
		if a.manifested[ip.Name] == v.Status {
			continue
		}
		img := files[0].Image
		m := export.Manifest{Image: img.Name, ToolVersion: a.e.ToolVersion, BuildTime: a.e.now(),
			StepKeys: map[string]string{}, Source: a.manifestSource(img), Verification: v}
		for _, s := range a.p.graph.ImageSteps(img.Name) {
			m.StepKeys[s.Addr.ID()] = s.Key.String()
		}
		sums := map[string][]export.SumEntry{}
		for _, s := range files {
			fk := s.Kind.(step.FileKind)
			var entry export.ManifestOutput
			if r := a.results[s]; r != nil && r.output != nil {
				entry = fk.ManifestEntry(s, r.output, r.data)
			} else {
				entry = fk.ManifestEntry(s, recordedOutput(a.p.record, s), nil)
			}
			m.Outputs = append(m.Outputs, entry)
			dest := outputPath(a.cfg, fk.OutputFile(s))
			dir := filepath.Dir(dest)
			sums[dir] = append(sums[dir], export.SumEntry{Name: filepath.Base(dest), SHA256: entry.SHA256, Unverified: !v.Verified()})
		}
		for dir, entries := range sums {
			if err := export.WriteSumEntries(dir, entries); err != nil {
				return fmt.Errorf("image %q: %w", img.Name, err)
			}
		}
		path := filepath.Join(filepath.Dir(outputPath(a.cfg, files[0].Kind.(step.FileKind).OutputFile(files[0]))), img.Name+".manifest.json")
		if err := export.WriteManifest(path, m); err != nil {
			return fmt.Errorf("image %q: %w", img.Name, err)
		}
		if a.manifested == nil {
			a.manifested = map[string]string{}
		}
		a.manifested[ip.Name] = v.Status
	}
	return nil
}

// verification says what the image's test step (nil when the image has none) found, as far as this apply
// knows now. Call with a.mu held.
func (a *applier) verification(test *step.Step) *export.Verification {
	if test == nil {
		return &export.Verification{Status: export.VerificationDisabled}
	}
	v := &export.Verification{Status: export.VerificationNotRun, TestKey: test.Key.String()}
	r := a.results[test]
	var report *step.TestReport
	if r != nil {
		report, _ = r.data.(*step.TestReport)
	}
	switch {
	case report != nil:
		v.Status = export.VerificationPassed
		if len(report.Failed()) > 0 {
			v.Status = export.VerificationFailed
		}
	case r != nil && r.status == StatusFailed:
		v.Status = export.VerificationFailed
	case a.p.present[test]:
		v.Status = export.VerificationPassed
		report = a.cachedReport(test)
	case a.e.SkipTests:
		v.Status = export.VerificationSkipped
	}
	if report != nil {
		for _, c := range report.Checks {
			v.Checks = append(v.Checks, export.ManifestCheck{Name: c.Name, Status: c.Status, Detail: c.Detail, Seconds: c.Seconds})
		}
	}
	return v
}

// cachedReport reads the report of a test the plan found cached, once per apply (every checkpoint writes the
// manifests again); nil when it cannot be read. Call with a.mu held.
func (a *applier) cachedReport(test *step.Step) *step.TestReport {
	if r, ok := a.reports[test]; ok {
		return r
	}
	var report *step.TestReport
	if obj, ok, err := a.e.Store.Lookup(test.Key); err == nil && ok {
		report, _ = test.Kind.(step.Verifier).CachedReport(obj)
	}
	if a.reports == nil {
		a.reports = map[*step.Step]*step.TestReport{}
	}
	a.reports[test] = report
	return report
}

func (a *applier) manifestSource(img *config.Image) export.ManifestSource {
	sum, _ := a.p.shared.SourceChecksum(img.Name)
	return export.ManifestSource{URL: a.cfg.Redact(img.Source.URL), Path: img.Source.Path, Image: img.Source.Image, Checksum: sum}
}

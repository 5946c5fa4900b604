package engine

import (
	"fmt"
	"path/filepath"

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
		var exports []*StepPlan
		test := a.p.graph.Test(ip.Name)
		tr := a.results[test]
		ran := test != nil && tr != nil && (tr.test != nil || tr.status == StatusFailed)
		complete := true
		for _, sp := range ip.Steps {
			if sp.step.Kind != KindExport {
				continue
			}
			exports = append(exports, sp)
			r := a.results[sp.step]
			switch {
			case r != nil && r.export != nil:
				ran = true
			case a.p.present[sp.step]:
			default:
				complete = false
			}
		}
		if !ran || !complete {
			continue
		}
		v := a.verification(test)
		if a.manifested[ip.Name] == v.Status {
			continue
		}
		img := exports[0].step.Image
		m := export.Manifest{Image: img.Name, ToolVersion: a.e.ToolVersion, BuildTime: a.e.now(),
			StepKeys: map[string]string{}, Source: manifestSource(a, img.Name), Verification: v}
		for _, s := range a.p.graph.ImageSteps(img.Name) {
			m.StepKeys[s.ID] = s.Key.String()
		}
		sums := map[string][]export.SumEntry{}
		for _, sp := range exports {
			o := sp.step.Output
			dest := outputPath(a.cfg, o)
			var entry export.ManifestOutput
			if r := a.results[sp.step]; r != nil && r.export != nil {
				entry = r.export.ManifestOutput(o.Name, o.Path)
			} else if rec := recordedOutput(a.p.record, sp.step); rec != nil {
				entry = export.ManifestOutput{Name: o.Name, Path: o.Path, Format: o.Format, Compression: o.Compression,
					Level: o.Level, Size: rec.Size, SHA256: rec.SHA256}
			}
			m.Outputs = append(m.Outputs, entry)
			dir := filepath.Dir(dest)
			sums[dir] = append(sums[dir], export.SumEntry{Name: filepath.Base(dest), SHA256: entry.SHA256, Unverified: !v.Verified()})
		}
		for dir, entries := range sums {
			if err := export.WriteSumEntries(dir, entries); err != nil {
				return fmt.Errorf("image %q: %w", img.Name, err)
			}
		}
		path := filepath.Join(filepath.Dir(outputPath(a.cfg, exports[0].step.Output)), img.Name+".manifest.json")
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
func (a *applier) verification(test *Step) *export.Verification {
	if test == nil {
		return &export.Verification{Status: export.VerificationDisabled}
	}
	v := &export.Verification{Status: export.VerificationNotRun, TestKey: test.Key.String()}
	r := a.results[test]
	report := (*TestReport)(nil)
	switch {
	case r != nil && r.test != nil:
		report = r.test
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
func (a *applier) cachedReport(test *Step) *TestReport {
	if r, ok := a.reports[test]; ok {
		return r
	}
	var report *TestReport
	if obj, ok, err := a.e.Store.Lookup(test.Key); err == nil && ok {
		report, _ = readTestReport(obj)
	}
	if a.reports == nil {
		a.reports = map[*Step]*TestReport{}
	}
	a.reports[test] = report
	return report
}

func manifestSource(a *applier, image string) export.ManifestSource {
	img := a.cfg.Image(image)
	return export.ManifestSource{URL: a.cfg.Redact(img.Source.URL), Path: img.Source.Path, Image: img.Source.Image,
		Checksum: a.p.kc.checksums[image]}
}

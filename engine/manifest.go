package engine

import (
	"fmt"
	"path/filepath"

	"gitlab.com/imgform/imgform/steps/export"
)

// writeManifests writes SHA256SUMS and <image>.manifest.json next to the outputs of every image whose
// exports ran in this apply and all succeeded, once per image and apply. Both files are written
// atomically; the manifest holds names, paths and digests only.
func (a *applier) writeManifests() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ip := range a.p.plan.Images {
		var exports []*StepPlan
		ran, complete := false, true
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
		if !ran || !complete || a.manifested[ip.Name] {
			continue
		}
		img := exports[0].step.Image
		m := export.Manifest{Image: img.Name, ToolVersion: a.e.ToolVersion, BuildTime: a.e.now(),
			StepKeys: map[string]string{}, Source: manifestSource(a, img.Name)}
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
			sums[dir] = append(sums[dir], export.SumEntry{Name: filepath.Base(dest), SHA256: entry.SHA256})
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
			a.manifested = map[string]bool{}
		}
		a.manifested[ip.Name] = true
	}
	return nil
}

func manifestSource(a *applier, image string) export.ManifestSource {
	img := a.cfg.Image(image)
	return export.ManifestSource{URL: a.cfg.Redact(img.Source.URL), Path: img.Source.Path, Image: img.Source.Image,
		Checksum: a.p.kc.checksums[image]}
}

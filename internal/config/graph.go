package config

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// checkImageGraph reports derived images whose parent does not exist and cycles between derived images.
func checkImageGraph(cfg *Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	names := make([]string, 0, len(cfg.Images))
	for _, img := range cfg.Images {
		names = append(names, img.Name)
	}
	for _, img := range cfg.Images {
		parent := img.Source.Image
		if parent == "" {
			continue
		}
		if cfg.Image(parent) == nil {
			diags = append(diags, errorAt(img.Source.ImageRange, "Reference to unknown image",
				"Image %q derives from image.%s, which is not declared.%s", img.Name, parent, suggestName(parent, names)))
		}
	}
	parents := map[string]bool{}
	for _, img := range cfg.Images {
		parents[img.Source.Image] = true
	}
	for _, img := range cfg.Images {
		if len(img.Outputs) == 0 && !parents[img.Name] {
			// Not an error: the result still lands in the cache. But it is most likely a forgotten output.
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  "Image without output",
				Detail:   fmt.Sprintf("Image %q has no output block and no image derives from it, so apply builds it but writes no file. Add an output \"NAME\" { path = ... } block.", img.Name),
				Subject:  img.DeclRange.Ptr(),
			})
		}
	}
	reported := map[string]bool{}
	for _, img := range cfg.Images {
		path := []string{img.Name}
		seen := map[string]bool{img.Name: true}
		for cur := img; cur != nil && cur.Source.Image != ""; {
			next := cfg.Image(cur.Source.Image)
			if next == nil {
				break
			}
			path = append(path, next.Name)
			if seen[next.Name] {
				if !reported[next.Name] {
					for _, n := range path {
						reported[n] = true
					}
					diags = append(diags, errorAt(img.Source.ImageRange, "Cycle between derived images",
						"These images derive from each other: %s. An image must start from a source that does not depend on it.",
						strings.Join(path, " -> ")))
				}
				break
			}
			seen[next.Name] = true
			cur = next
		}
	}
	return diags
}

// checkOutputPaths reports two outputs or downloads that would write the same file.
func checkOutputPaths(cfg *Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	type writer struct {
		what string
		at   hcl.Range
	}
	seen := map[string]writer{}
	add := func(path string, w writer) {
		if path == "" {
			return
		}
		p := filepath.Clean(path)
		if prev, ok := seen[p]; ok {
			diags = append(diags, errorAt(w.at, "Duplicate output path",
				"%s writes %s, which %s at %s writes too. Give each its own path.", capitalize(w.what), path, prev.what, Pos(prev.at)))
			return
		}
		seen[p] = w
	}
	for _, img := range cfg.Images {
		for _, o := range img.Outputs {
			add(o.Path, writer{fmt.Sprintf("output %q", o.Name), o.DeclRange})
		}
		for _, p := range img.Provisioners {
			for _, dl := range p.Downloads {
				if dl.Source != "" && dl.Destination != "" {
					add(dl.Path(), writer{fmt.Sprintf("the download of %s by provisioner %q", dl.Source, p.Name), dl.DeclRange})
				}
			}
		}
	}
	return diags
}

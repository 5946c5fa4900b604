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

// checkOutputPaths reports two outputs that would write the same file.
func checkOutputPaths(cfg *Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	seen := map[string]*Output{}
	for _, img := range cfg.Images {
		for _, o := range img.Outputs {
			if o.Path == "" {
				continue
			}
			p := filepath.Clean(o.Path)
			if prev, ok := seen[p]; ok {
				diags = append(diags, errorAt(o.DeclRange, "Duplicate output path",
					"Output %q writes %s, which output %q at %s writes too. Give each output its own path.", o.Name, o.Path, prev.Name, Pos(prev.DeclRange)))
				continue
			}
			seen[p] = o
		}
	}
	return diags
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// TestTemplateFileErrors: a template that does not parse or does not evaluate gives an error that names
// the template and the place in it, and never "<nil>" (as hcl.Diagnostics.Error prints for a diagnostic
// without a range).
func TestTemplateFileErrors(t *testing.T) {
	tests := map[string]struct {
		template string
		want     []string
	}{
		"does not parse":    {"Hello ${name\n", []string{"template t.tftpl: t.tftpl:1:", "error: "}},
		"does not evaluate": {"Hello ${name + 1}\n", []string{"template t.tftpl: t.tftpl:1:", "error: "}},
		"missing file":      {"", []string{"cannot read template missing.tftpl: no such file or directory"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := "missing.tftpl"
			if tc.template != "" {
				path = "t.tftpl"
				if err := os.WriteFile(filepath.Join(dir, path), []byte(tc.template), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			vars := cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("world")})
			_, err := Functions(dir)["templatefile"].Call([]cty.Value{cty.StringVal(path), vars})
			if err == nil {
				t.Fatal("templatefile succeeded")
			}
			msg := err.Error()
			if strings.Contains(msg, "<nil>") {
				t.Errorf("error %q prints <nil>", msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestShortError(t *testing.T) {
	rng := hcl.Range{Filename: "t.tftpl", Start: hcl.Pos{Line: 2, Column: 5}}
	diags := hcl.Diagnostics{
		{Severity: hcl.DiagError, Summary: "No range", Detail: "Nothing to point at."},
		{Severity: hcl.DiagWarning, Summary: "Left out", Detail: "Warnings are not errors."},
		{Severity: hcl.DiagError, Summary: "Bad thing", Detail: "Here.", Subject: &rng},
	}
	want := "error: No range; Nothing to point at.; t.tftpl:2:5: error: Bad thing; Here."
	if got := shortError(diags).Error(); got != want {
		t.Errorf("shortError = %q, want %q", got, want)
	}
}

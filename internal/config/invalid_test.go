package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// Each folder under testdata/invalid holds one mistake a user can make. The test asserts the error's summary,
// a part of its detail (the hint that says how to fix it), and the line and column it points at.
func TestInvalidConfigurations(t *testing.T) {
	cases := map[string]struct {
		line, col int
		summary   string
		detail    string
	}{
		"bad-duration":                {8, 15, `Invalid duration for "timeout"`, `"5m"`},
		"bad-network-key":             {7, 15, "Invalid network section", "e.g. RouteMetric"},
		"bad-size":                    {7, 14, `Invalid size for "memory"`, `"4GiB"`},
		"bad-host-loopback":           {7, 21, `Incorrect type for "host_loopback"`, "must be true or false"},
		"bad-publish":                 {8, 15, "Invalid publish reference", "oci://HOST[:PORT]/REPOSITORY:TAG"},
		"bad-variable-default":        {3, 13, "Invalid default value for variable", "a number is required"},
		"checksum-without-type":       {4, 16, "Invalid checksum", `"sha256:abab`},
		"checksum-wrong-length":       {4, 16, "Invalid checksum", `did you mean "sha512:`},
		"derived-cycle":               {3, 13, "Cycle between derived images", "a -> b -> a"},
		"duplicate-image":             {10, 7, "Duplicate image", "main.imgform.hcl:1:1"},
		"duplicate-output-path":       {15, 3, "Duplicate output path", "main.imgform.hcl:6:3"},
		"duplicate-provisioner":       {10, 13, `Duplicate provision "setup"`, "main.imgform.hcl:6:13"},
		"duplicate-variable":          {5, 10, "Duplicate variable", "main.imgform.hcl:1:1"},
		"empty-test":                  {6, 3, "Empty test", `give inline = ["command", ...] or script`},
		"inline-and-script":           {8, 5, "Both inline and script", "Use two provision blocks"},
		"level-out-of-range":          {8, 19, `Invalid value for "level"`, "from 1 to 22"},
		"local-cycle":                 {2, 3, "Cycle between local values", "local.a, local.b"},
		"missing-checksum":            {2, 3, "Missing checksum", `checksum = "none"`},
		"missing-file-function":       {7, 15, "Error in function call", "no file exists at"},
		"missing-required":            {6, 18, "Missing required argument", `"path" is required`},
		"missing-script":              {7, 14, "Script not found", "relative to the configuration folder"},
		"missing-source":              {1, 1, "Missing source block", "image = image.OTHER"},
		"misspelled-attribute":        {7, 5, "Unsupported argument", `Did you mean "memory"?`},
		"misspelled-smoke-test-check": {7, 5, "Unsupported argument", `Did you mean "network"?`},
		"qcow2-zstd-raw":              {8, 19, "qcow2-zstd needs format qcow2", `format = "qcow2"`},
		"relative-destination":        {9, 21, "Relative destination", "absolute path"},
		"size-too-small":              {7, 17, `Invalid size for "disk_size"`, "less than the minimum of 64MiB"},
		"syntax-error":                {3, 42, "Invalid multi-line string", "heredoc"},
		"templatefile-missing-var":    {7, 15, "Error in function call", `uses "missing"`},
		"two-sources":                 {4, 5, "Invalid source", "url and path"},
		"unknown-accelerator":         {7, 19, `Unknown accelerator "kvmm"`, `Did you mean "kvm"?`},
		"unknown-block":               {6, 3, "Unsupported block type", `Did you mean "provision"?`},
		"unknown-compression":         {7, 19, `Unknown compression "zstandard"`, `"none", "zstd" or "qcow2-zstd"`},
		"unknown-format":              {7, 14, `Unknown output format "vdi"`, `"qcow2", "raw", "vmdk" or "vhdx"`},
		"unknown-image-ref":           {12, 13, "Reference to unknown image", `Did you mean "base"?`},
		"unknown-network-section":     {7, 5, "Unknown network section", `Did you mean "Network"?`},
		"unknown-variable":            {11, 34, "Reference to undeclared input variable", `Did you mean "admin_user"?`},
		"validation-failed":           {6, 21, `Invalid value for variable "cpus"`, "At least one CPU, please."},
		"variable-without-value":      {1, 1, `No value for variable "admin_user"`, "-var admin_user=VALUE"},
		"wrong-type":                  {7, 12, `Incorrect type for "cpus"`, "a number is required"},
	}
	dirs, err := filepath.Glob(filepath.Join("testdata", "invalid", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != len(cases) {
		t.Errorf("testdata/invalid has %d cases, the table %d: keep them in step", len(dirs), len(cases))
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "invalid", name)
			_, diags := Load(dir, LoadOptions{Env: []string{}})
			if !diags.HasErrors() {
				t.Fatalf("loaded without errors")
			}
			var found *hcl.Diagnostic
			for _, d := range diags {
				if d.Severity == hcl.DiagError && d.Summary == tc.summary {
					found = d
					break
				}
			}
			if found == nil {
				t.Fatalf("no error %q among:\n%s", tc.summary, formatAll(diags))
			}
			if found.Subject == nil {
				t.Fatalf("error %q has no source range", tc.summary)
			}
			if got := found.Subject; got.Start.Line != tc.line || got.Start.Column != tc.col {
				t.Errorf("error %q at %d:%d, want %d:%d", tc.summary, got.Start.Line, got.Start.Column, tc.line, tc.col)
			}
			if want := filepath.Join(dir, "main.imgform.hcl"); found.Subject.Filename != want {
				t.Errorf("error in file %s, want %s", found.Subject.Filename, want)
			}
			if !strings.Contains(found.Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", found.Detail, tc.detail)
			}
		})
	}
}

func formatAll(diags hcl.Diagnostics) string {
	var lines []string
	for _, d := range diags {
		lines = append(lines, FormatShort(d))
	}
	return strings.Join(lines, "\n")
}

// Several independent mistakes are all reported in one run, not only the first.
func TestSeveralErrorsAtOnce(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "main.imgform.hcl", `
image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:1234"
  }
  machine {
    memroy = "1GiB"
    cpus   = 0
  }
  output "disk" {
    format = "vdi"
    path   = "dist/base.vdi"
  }
}
`)
	_, diags := Load(dir, LoadOptions{Env: []string{}})
	want := []string{"Invalid checksum", "Unsupported argument", `Invalid value for "cpus"`, `Unknown output format "vdi"`}
	for _, w := range want {
		found := false
		for _, d := range diags {
			found = found || d.Summary == w
		}
		if !found {
			t.Errorf("missing error %q in:\n%s", w, formatAll(diags))
		}
	}
}

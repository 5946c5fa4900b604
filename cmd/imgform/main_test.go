package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// imgform runs the command line in-process and returns the exit status and both streams.
func imgform(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(append([]string{"imgform"}, args...), strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const exampleDir = "../../examples/debian-12-base"

func TestValidateExample(t *testing.T) {
	code, stdout, stderr := imgform(t, "", "validate", exampleDir)
	if code != 0 || !strings.Contains(stdout, "is valid: 1 image(s)") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

func TestValidateReportsErrorsWithPositions(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.imgform.hcl"), `image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  machine {
    memroy = "1GiB"
  }
  output "disk" {
    format = "vhd"
    path   = "dist/disk.vhd"
  }
}
`)
	code, stdout, stderr := imgform(t, "", "validate", dir)
	if code != 1 || stdout != "" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	for _, want := range []string{
		filepath.Join(dir, "main.imgform.hcl") + `:7:5: Error: Unsupported argument`,
		`   7:     memroy = "1GiB"`,
		`Did you mean "memory"?`,
		filepath.Join(dir, "main.imgform.hcl") + `:10:14: Error: Unknown output format "vhd"`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestValidateVarFlagsInOrder(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.imgform.hcl"), `variable "cpus" {
  type = number
  validation {
    condition     = var.cpus == 4
    error_message = "cpus must end up as 4."
  }
}

image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  machine {
    cpus = var.cpus
  }
  output "disk" {
    path = "dist/disk.qcow2"
  }
}
`)
	writeFile(t, filepath.Join(dir, "two.hcl"), "cpus = 2\n")
	if code, _, stderr := imgform(t, "", "validate", "-var", "cpus=4", "-var-file", filepath.Join(dir, "two.hcl"), dir); code != 1 || !strings.Contains(stderr, "cpus must end up as 4.") {
		t.Errorf("the later -var-file should win: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := imgform(t, "", "validate", "-var-file", filepath.Join(dir, "two.hcl"), "-var", "cpus=4", dir); code != 0 {
		t.Errorf("the later -var should win: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := imgform(t, "", "validate", "-var", "nonsense", dir); code == 0 || !strings.Contains(stderr, "expected NAME=VALUE") {
		t.Errorf("bad -var accepted: exit %d\n%s", code, stderr)
	}
}

func TestValidateEmptyFolder(t *testing.T) {
	code, _, stderr := imgform(t, "", "validate", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "No configuration files") {
		t.Errorf("exit %d\n%s", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := imgform(t, "", "version")
	if code != 0 || !strings.HasPrefix(stdout, "imgform ") {
		t.Errorf("exit %d, %q", code, stdout)
	}
}

func TestCompletion(t *testing.T) {
	// urfave/cli reads the word before the cursor from os.Args, not from the arguments given to Run.
	saved := os.Args
	os.Args = []string{"imgform", "--generate-bash-completion"}
	defer func() { os.Args = saved }()
	code, stdout, _ := imgform(t, "", "--generate-bash-completion")
	if code != 0 || !strings.Contains(stdout, "validate") || !strings.Contains(stdout, "apply") {
		t.Errorf("exit %d, %q", code, stdout)
	}
	if code, stdout, _ := imgform(t, "", "completion", "bash"); code != 0 || !strings.Contains(stdout, "complete -o filenames -F _imgform_complete imgform") {
		t.Errorf("exit %d, %q", code, stdout)
	}
}

// The fish script, loaded by a real fish, completes commands and each command's flags.
func TestFishCompletion(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Fatal("fish is missing: run scripts/install-deps.sh (as root)")
	}
	code, script, stderr := imgform(t, "", "completion", "fish")
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	path := filepath.Join(t.TempDir(), "imgform.fish")
	writeFile(t, path, script)
	for line, want := range map[string]string{"imgform pl": "plan\t", "imgform apply --on": "--only\t", "imgform plan --rep": "--replace\t", "imgform cache ": "gc\t"} {
		out, err := exec.Command("fish", "--no-config", "-c", "source "+path+"; complete -C '"+line+"'").CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("fish completes %q with:\n%s (%v), want %q", line, out, err, want)
		}
	}
}

// pre-commit passes file names; each stands for its folder, and every folder is checked once.
func TestValidateFilesAndFolders(t *testing.T) {
	good, bad := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(good, "main.imgform.hcl"), "image \"a\" {\n  source {\n    path = \"disk.qcow2\"\n  }\n  output \"o\" {\n    path = \"o.qcow2\"\n  }\n}\n")
	writeFile(t, filepath.Join(good, "disk.qcow2"), "")
	writeFile(t, filepath.Join(good, "vars.imgform.hcl"), "")
	writeFile(t, filepath.Join(bad, "main.imgform.hcl"), "image \"a\" {}\n")
	code, stdout, stderr := imgform(t, "", "validate", filepath.Join(good, "main.imgform.hcl"), filepath.Join(good, "vars.imgform.hcl"), bad)
	if code != 1 || strings.Count(stdout, "is valid") != 1 || !strings.Contains(stderr, "Missing source block") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// validate -json prints terraform validate -json's layout: valid, counts, and each diagnostic with its
// file range and snippet; the exit status says whether it is valid.
func TestValidateJSON(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.imgform.hcl"), "image \"a\" {\n  source {\n    path = \"nope.raw\"\n  }\n}\n")
	code, stdout, stderr := imgform(t, "", "validate", "-json", dir)
	var res struct {
		FormatVersion string `json:"format_version"`
		Valid         bool
		ErrorCount    int `json:"error_count"`
		WarningCount  int `json:"warning_count"`
		Diagnostics   []struct {
			Severity, Summary string
			Range             struct {
				Filename string
				Start    struct{ Line, Column, Byte int }
			}
			Snippet struct {
				Code                 string
				HighlightStartOffset int `json:"highlight_start_offset"`
				HighlightEndOffset   int `json:"highlight_end_offset"`
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || code != 1 || stderr != "" {
		t.Fatalf("exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if res.FormatVersion != "1.0" || res.Valid || res.ErrorCount != 1 || res.WarningCount != 1 || len(res.Diagnostics) != 2 {
		t.Fatalf("%+v", res)
	}
	d := res.Diagnostics[0]
	if d.Severity != "error" || d.Summary != "Source image not found" || d.Range.Filename != filepath.Join(dir, "main.imgform.hcl") ||
		d.Range.Start.Line != 3 || d.Range.Start.Column != 12 || d.Snippet.Code[d.Snippet.HighlightStartOffset:d.Snippet.HighlightEndOffset] != `"nope.raw"` {
		t.Errorf("diagnostic %+v", d)
	}
	writeFile(t, filepath.Join(dir, "nope.raw"), "")
	writeFile(t, filepath.Join(dir, "main.imgform.hcl"), "image \"a\" {\n  source {\n    path = \"nope.raw\"\n  }\n  output \"o\" {\n    path = \"o.qcow2\"\n  }\n}\n")
	if code, stdout, _ := imgform(t, "", "validate", "-json", dir); code != 0 || !strings.Contains(stdout, `"valid": true`) || !strings.Contains(stdout, `"diagnostics": []`) {
		t.Errorf("a valid configuration: exit %d\n%s", code, stdout)
	}
}

// imgform graph prints DOT that Graphviz renders, with a node per step named by its address and the edges
// of derived images.
func TestGraph(t *testing.T) {
	if _, err := exec.LookPath("dot"); err != nil {
		t.Fatal("dot (graphviz) is missing: run scripts/install-deps.sh (as root)")
	}
	code, stdout, stderr := imgform(t, "", "graph", "../../examples/debian-12-variants")
	if code != 0 {
		t.Fatalf("exit %d %s", code, stderr)
	}
	for _, want := range []string{`"debian-12-small.provision.motd" [label = "provision \"motd\""];`, `"debian-12-small.cleanup" -> "debian-12-agent.boot";`,
		`"debian-12-agent.seed" -> "debian-12-agent.boot" [style = "dashed"];`, `"debian-12-agent.cleanup" -> "debian-12-agent.test";`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("graph lacks %s:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, `"debian-12-agent.seed" -> "debian-12-agent.cleanup"`) {
		t.Error("the seed is drawn to every step of the session, not to its first")
	}
	cmd := exec.Command("dot", "-Tsvg")
	cmd.Stdin = strings.NewReader(stdout)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "<svg") {
		t.Errorf("dot -Tsvg: %v\n%.300s", err, out)
	}
}

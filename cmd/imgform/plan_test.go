package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func planConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	disk := make([]byte, 1<<20)
	disk[510], disk[511] = 0x55, 0xAA
	if err := os.WriteFile(filepath.Join(dir, "disk.raw"), disk, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "main.imgform.hcl"), `variable "secret" {
  default   = "s3cr3t-value"
  sensitive = true
}

image "base" {
  source {
    path = "disk.raw"
  }
  provision "one" {
    inline      = ["echo hi"]
    environment = { TOKEN = var.secret }
    file {
      direction   = "download"
      source      = "/etc/os-release"
      destination = "dist/"
    }
  }
  output "raw" {
    format = "raw"
    path   = "dist/base.raw"
  }
}
`)
	return dir
}

func TestPlanDetailedExitCodeAndJSON(t *testing.T) {
	t.Setenv("IMGFORM_CACHE_DIR", t.TempDir())
	dir := planConfig(t)
	code, stdout, stderr := imgform(t, "", "plan", "-detailed-exitcode", dir)
	if code != 2 || !strings.Contains(stdout, `+ base.provision.one`) || !strings.Contains(stdout, "-> dist/os-release\n") ||
		!strings.Contains(stdout, "Plan: 7 to run, 0 cached.") {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = imgform(t, "", "plan", "-json", dir)
	var p struct {
		FormatVersion int `json:"format_version"`
		ToRun         int `json:"to_run"`
		Images        []struct {
			Steps []struct {
				ID, Action string
				Reasons    []string
				Downloads  []string
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &p); err != nil || code != 0 {
		t.Fatalf("exit %d, %v\n%s", code, err, stdout)
	}
	if p.FormatVersion != 1 || p.ToRun != 7 || p.Images[0].Steps[3].ID != "base/provision/one" ||
		strings.Join(p.Images[0].Steps[3].Downloads, " ") != "dist/os-release" {
		t.Errorf("plan %+v", p)
	}
	if strings.Contains(stdout, "s3cr3t-value") {
		t.Error("the plan shows a sensitive value")
	}
	// -skip-tests: the plan says the test will not run and what that means for the outputs.
	code, stdout, stderr = imgform(t, "", "plan", "-skip-tests", dir)
	if code != 0 || !strings.Contains(stdout, "- base.test") || !strings.Contains(stdout, "-skip-tests: the outputs of this image will be marked unverified") ||
		!strings.Contains(stdout, "Tests will be skipped") {
		t.Errorf("plan -skip-tests: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := imgform(t, "", "plan", "-detailed-exitcode", filepath.Join(dir, "missing")); code != 1 {
		t.Errorf("error case: exit %d %s", code, stderr)
	}
}

// A damaged record makes cache verify fail and name it; -remove drops it.
func TestCacheVerifyReportsDamagedRecords(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("IMGFORM_CACHE_DIR", dir)
	if code, _, stderr := imgform(t, "", "cache", "ls"); code != 0 {
		t.Fatalf("ls: %s", stderr)
	}
	writeFile(t, filepath.Join(dir, "records", "0123.json"), `{"format_version": 1, "images": {`)
	if code, stdout, _ := imgform(t, "", "cache", "verify"); code != 1 || !strings.Contains(stdout, "bad record "+filepath.Join(dir, "records", "0123.json")) || !strings.Contains(stdout, "damaged record") {
		t.Errorf("verify with a damaged record: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := imgform(t, "", "cache", "verify", "-remove"); code != 0 || !strings.Contains(stdout, "removed damaged record") {
		t.Errorf("verify -remove: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := imgform(t, "", "cache", "verify"); code != 0 || strings.Contains(stdout, "record") {
		t.Errorf("verify after -remove: exit %d\n%s", code, stdout)
	}
}

func TestCacheCommands(t *testing.T) {
	t.Setenv("IMGFORM_CACHE_DIR", t.TempDir())
	if code, stdout, stderr := imgform(t, "", "cache", "ls"); code != 0 || !strings.Contains(stdout, "0 object(s)") {
		t.Errorf("ls: exit %d %s %s", code, stdout, stderr)
	}
	if code, stdout, _ := imgform(t, "", "cache", "verify"); code != 0 || !strings.Contains(stdout, "checked 0 object(s): 0 bad") {
		t.Errorf("verify: exit %d %s", code, stdout)
	}
	if code, _, stderr := imgform(t, "", "cache", "gc"); code != 1 || !strings.Contains(stderr, "-older-than or -max-size") {
		t.Errorf("gc without limits: exit %d %s", code, stderr)
	}
	if code, stdout, _ := imgform(t, "", "cache", "gc", "-max-size", "1GiB", "-dry-run"); code != 0 || !strings.Contains(stdout, "would remove 0 object(s)") {
		t.Errorf("gc: exit %d %s", code, stdout)
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 233621332: "222.8 MiB", 5 << 30: "5.0 GiB", 3 << 40: "3.0 TiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// -only, -except and -replace on the command line: the plan says what is left out and why a step runs, and
// a wrong name is a clear error with exit 1.
func TestPlanOnlyExceptReplaceFlags(t *testing.T) {
	t.Setenv("IMGFORM_CACHE_DIR", t.TempDir())
	dir := planConfig(t)
	writeFile(t, filepath.Join(dir, "other.imgform.hcl"), `image "other" {
  source {
    path = "disk.raw"
  }
  provision "x" {
    inline = ["true"]
  }
}
`)
	code, stdout, stderr := imgform(t, "", "plan", "-only", "oth*", dir)
	if code != 0 || !strings.Contains(stdout, "image \"base\"\n  (left out by -only)\n\n") || !strings.Contains(stdout, "+ other.provision.x") ||
		strings.Contains(stdout, "base.fetch") {
		t.Errorf("plan -only: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = imgform(t, "", "plan", "-except", "other", "-replace", "base.provision.one", dir)
	if code != 0 || !strings.Contains(stdout, "-replace=base.provision.one: built again, under a new key") ||
		!strings.Contains(stdout, "image \"other\"\n  (left out by -except)") {
		t.Errorf("plan -except -replace: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, args := range [][]string{{"-only", "nope"}, {"-replace", "base.provision"}} {
		code, _, stderr = imgform(t, "", append(append([]string{"plan"}, args...), dir)...)
		if code != 1 || !(strings.Contains(stderr, "matches no image; the images are base, other") || strings.Contains(stderr, "no such step; addresses are IMAGE.KIND[.NAME]")) {
			t.Errorf("plan %v: exit %d %s", args, code, stderr)
		}
	}
}

// -log-file, before or after the command, appends the debug log to a file only its owner reads; IMGFORM_LOG
// with an unknown level is an error.
func TestLogFileFlag(t *testing.T) {
	t.Setenv("IMGFORM_CACHE_DIR", t.TempDir())
	dir := planConfig(t)
	for _, args := range [][]string{{"plan", "-log-file", "LOG", dir}, {"-log-file", "LOG", "plan", dir}} {
		log := filepath.Join(t.TempDir(), "debug.log")
		for i := range args {
			if args[i] == "LOG" {
				args[i] = log
			}
		}
		if code, _, stderr := imgform(t, "", args...); code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, stderr)
		}
		b, err := os.ReadFile(log)
		fi, _ := os.Stat(log)
		if err != nil || !strings.Contains(string(b), "[INFO] imgform: ") || !strings.Contains(string(b), " plan\n") || fi.Mode().Perm() != 0o600 {
			t.Errorf("%v: log %q (%v), mode %v", args, b, err, fi.Mode())
		}
	}
	t.Setenv("IMGFORM_LOG", "verbose")
	if code, _, stderr := imgform(t, "", "plan", dir); code != 1 || !strings.Contains(stderr, "IMGFORM_LOG: log level \"verbose\"") {
		t.Errorf("unknown level: exit %d %s", code, stderr)
	}
}

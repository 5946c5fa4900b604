package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// The provisioner options Packer users rely on: scripts, valid_exit_codes, max_retries, pause_before and
// refresh_every, read and checked with positions.
func TestProvisionerOptions(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "disk.raw", "")
	writeTestFile(t, dir, "a.sh", "#!/bin/sh\n")
	writeTestFile(t, dir, "b.sh", "#!/bin/sh\n")
	writeTestFile(t, dir, "main.imgform.hcl", `image "i" {
  refresh_every = "2w"
  source {
    path = "disk.raw"
  }
  provision "p" {
    scripts          = ["a.sh", "b.sh"]
    valid_exit_codes = [0, 2]
    max_retries      = 3
    pause_before     = "10s"
    refresh_every    = "1d12h"
  }
  provision "q" {
    inline = ["true"]
  }
  output "o" {
    path = "o.qcow2"
  }
}
`)
	cfg, diags := Load(dir, LoadOptions{Env: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	img := cfg.Images[0]
	p, q := img.Provisioners[0], img.Provisioners[1]
	if !slices.Equal(p.Scripts, []string{"a.sh", "b.sh"}) || !slices.Equal(p.ValidExitCodes, []int{0, 2}) || p.MaxRetries != 3 ||
		p.PauseBefore != 10*time.Second || p.RefreshEvery != 36*time.Hour || img.RefreshEvery != 14*24*time.Hour {
		t.Errorf("read %+v, image refresh %v", p, img.RefreshEvery)
	}
	if !slices.Equal(q.ValidExitCodes, []int{0}) || q.MaxRetries != 0 || q.PauseBefore != 0 {
		t.Errorf("defaults %+v", q)
	}
	for name, c := range map[string]struct{ attrs, want string }{
		"scripts and inline": {`scripts = ["a.sh"]
    inline = ["true"]`, "Both scripts and inline or script"},
		"missing script": {`scripts = ["a.sh", "c.sh"]`, "Script not found"},
		"exit code 256": {`inline = ["true"]
    valid_exit_codes = [0, 256]`, "Invalid exit code"},
		"no exit code": {`inline = ["true"]
    valid_exit_codes = []`, "No valid exit code"},
		"negative retries": {`inline = ["true"]
    max_retries = -1`, `Invalid value for "max_retries"`},
		"bad age": {`inline = ["true"]
    refresh_every = "7 days"`, `Invalid age for "refresh_every"`},
	} {
		writeTestFile(t, dir, "main.imgform.hcl", "image \"i\" {\n  source {\n    path = \"disk.raw\"\n  }\n  provision \"p\" {\n    "+c.attrs+"\n  }\n}\n")
		_, diags := Load(dir, LoadOptions{Env: []string{}})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), c.want) || !strings.Contains(diags.Error(), "main.imgform.hcl:") {
			t.Errorf("%s: %v, want %q", name, diags, c.want)
		}
	}
}

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

// A file block with direction = "download" copies a guest file out: source is an absolute guest path,
// destination a local path ("dir/" keeps the guest name); upload-only attributes, a relative source, an
// unknown direction and two writers of one local file are errors with positions.
func TestDownloads(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "disk.raw", "")
	writeTestFile(t, dir, "main.imgform.hcl", `image "i" {
  source {
    path = "disk.raw"
  }
  provision "p" {
    inline = ["dpkg-query -W > /run/packages.txt"]
    file {
      content     = "x"
      destination = "/etc/x"
    }
    file {
      direction   = "download"
      source      = "/run/packages.txt"
      destination = "dist/packages.txt"
    }
    file {
      direction   = "download"
      source      = "/var/log/sbom.json"
      destination = "dist/"
    }
    file {
      direction   = "upload"
      content     = "y"
      destination = "/etc/y"
    }
  }
}
`)
	cfg, diags := Load(dir, LoadOptions{Env: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	p := cfg.Images[0].Provisioners[0]
	if len(p.Uploads) != 2 || p.Uploads[1].Destination != "/etc/y" || len(p.Downloads) != 2 {
		t.Fatalf("uploads %+v, downloads %+v", p.Uploads, p.Downloads)
	}
	if d := p.Downloads[0]; d.Source != "/run/packages.txt" || d.Path() != "dist/packages.txt" {
		t.Errorf("first download %+v, path %s", d, d.Path())
	}
	if got := p.Downloads[1].Path(); got != "dist/sbom.json" {
		t.Errorf("a destination folder gives %s, want dist/sbom.json", got)
	}

	// Each block's first line is line 7 of the file; its lines are not indented.
	for name, c := range map[string]struct{ block, want, at string }{
		"relative source":   {"direction = \"download\"\nsource = \"run/x\"\ndestination = \"x\"", "Invalid download source", ":8,10"},
		"folder source":     {"direction = \"download\"\nsource = \"/run/\"\ndestination = \"x\"", "Invalid download source", ":8,10"},
		"no source":         {"direction = \"download\"\ndestination = \"x\"", "Missing file source", ":6,5"},
		"empty destination": {"direction = \"download\"\nsource = \"/x\"\ndestination = \" \"", "Empty destination", ":9,15"},
		"mode":              {"direction = \"download\"\nsource = \"/x\"\ndestination = \"x\"\nmode = \"0644\"", "Not for a download", ":10,1"},
		"content":           {"direction = \"download\"\nsource = \"/x\"\ndestination = \"x\"\ncontent = \"y\"", "Not for a download", ":10,1"},
		"bad direction":     {"direction = \"down\"\nsource = \"/x\"\ndestination = \"x\"", "Invalid file direction", ":7,13"},
		"same as output":    {"direction = \"download\"\nsource = \"/x\"\ndestination = \"o.qcow2\"", "output \"o\" at", ":6,5"},
		"same as another":   {"direction = \"download\"\nsource = \"/x\"\ndestination = \"./\"\n}\nfile {\ndirection = \"download\"\nsource = \"/y/x\"\ndestination = \"x\"", "Duplicate output path", ":11,1"},
	} {
		writeTestFile(t, dir, "main.imgform.hcl", "image \"i\" {\n  source {\n    path = \"disk.raw\"\n  }\n  provision \"p\" {\n    file {\n"+
			c.block+"\n    }\n  }\n  output \"o\" {\n    path = \"o.qcow2\"\n  }\n}\n")
		_, diags := Load(dir, LoadOptions{Env: []string{}})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), c.want) || !strings.Contains(diags.Error(), "main.imgform.hcl"+c.at) {
			t.Errorf("%s: %v, want %q at %s", name, diags, c.want, c.at)
		}
	}
}

package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/config"
)

// baseConfig is an image with a local source, a seed, three provisioners (inline, script, upload), cleanup
// and one export.
const baseConfig = `
variable "greeting" {
  default = "hello"
}

variable "version" {
  default = "1"
}

image "base" {
  source {
    path = "disk.raw"
  }
  machine {
    memory    = "512MiB"
    cpus      = 1
    disk_size = "64MiB"
  }
  userdata {
    cloud_config = { packages = ["curl"] }
  }
  network "50-default" {
    match   = { Name = "en*" }
    network = { DHCP = "ipv4" }
  }
  provision "one" {
    inline = ["echo ${var.greeting}"]
  }
  provision "two" {
    script = "scripts/two.sh"
  }
  provision "three" {
    file {
      source      = "files/motd"
      destination = "/etc/motd"
    }
  }
  cleanup {
    logs = false
  }
  output "raw" {
    format = "raw"
    path   = "dist/base-${var.version}.raw"
  }
}
`

func (te *testEnv) writeBase() {
	te.t.Helper()
	te.write("main.imgform.hcl", baseConfig)
	te.write("scripts/two.sh", "#!/bin/sh\necho two\n")
	te.write("files/motd", "welcome\n")
	makeDisk(te.t, filepath.Join(te.dir, "disk.raw"), 0x11)
}

func keysOf(p *Plan) map[string]string {
	m := map[string]string{}
	for _, ip := range p.Images {
		for _, sp := range ip.Steps {
			m[sp.ID] = sp.Key
		}
	}
	return m
}

// The same configuration in another folder (and with another store) gives the same keys, and so does a
// second plan of the same folder.
func TestKeysStableAcrossFoldersAndRuns(t *testing.T) {
	a, b := newTestEnv(t), newTestEnv(t)
	a.writeBase()
	b.writeBase()
	ka, kb := keysOf(a.plan(a.load())), keysOf(b.plan(b.load()))
	if len(ka) != 9 {
		t.Fatalf("want 9 steps, got %v", ka)
	}
	for id, k := range ka {
		if kb[id] != k {
			t.Errorf("%s: key %s in one folder, %s in the other", id, k[:12], kb[id][:12])
		}
	}
	again := keysOf(a.plan(a.load()))
	for id, k := range ka {
		if again[id] != k {
			t.Errorf("%s: key changed between two plans", id)
		}
	}
}

// Each kind of input changes exactly the keys of the steps that read it and of the steps after them; the
// things that cannot change a result change no key.
func TestKeysChangeWithEachInput(t *testing.T) {
	all := []string{"base/fetch", "base/seed", "base/boot", "base/provision/one", "base/provision/two",
		"base/provision/three", "base/cleanup", "base/export/raw", "base/test"}
	from := func(id string) []string {
		for i, s := range all {
			if s == id {
				return all[i:]
			}
		}
		t.Fatalf("no step %s", id)
		return nil
	}
	bootOn := append([]string{}, from("base/boot")...)
	cases := map[string]struct {
		change func(te *testEnv)
		vars   []config.VarArg
		want   []string // steps whose key changes
	}{
		"source content": {change: func(te *testEnv) { makeDisk(te.t, filepath.Join(te.dir, "disk.raw"), 0x22) },
			want: append([]string{"base/fetch"}, bootOn...)},
		"userdata": {change: func(te *testEnv) { te.replace(`packages = ["curl"]`, `packages = ["jq"]`) },
			want: append([]string{"base/seed"}, bootOn...)},
		"network unit": {change: func(te *testEnv) { te.replace(`DHCP = "ipv4"`, `DHCP = "yes"`) },
			want: append([]string{"base/seed"}, bootOn...)},
		"image name (hostname)": {change: func(te *testEnv) { te.replace(`image "base"`, `image "base2"`) }},
		"disk size":             {change: func(te *testEnv) { te.replace(`"64MiB"`, `"128MiB"`) }, want: bootOn},
		"inline command":        {change: func(te *testEnv) { te.replace(`echo ${var.greeting}`, `echo hi`) }, want: from("base/provision/one")},
		"variable used inline":  {vars: []config.VarArg{{Name: "greeting", Value: "bye"}}, want: from("base/provision/one")},
		"script content":        {change: func(te *testEnv) { te.write("scripts/two.sh", "#!/bin/sh\necho 2\n") }, want: from("base/provision/two")},
		"uploaded file":         {change: func(te *testEnv) { te.write("files/motd", "hi\n") }, want: from("base/provision/three")},
		"upload destination": {change: func(te *testEnv) { te.replace(`destination = "/etc/motd"`, `destination = "/etc/issue"`) },
			want: from("base/provision/three")},
		"cleanup flag": {change: func(te *testEnv) { te.replace(`logs = false`, `logs = true`) }, want: from("base/cleanup")},
		// The test boots the final layer, not the export: an output's format is not in its key.
		"output format": {change: func(te *testEnv) { te.replace(`format = "raw"`, `format = "qcow2"`) }, want: []string{"base/export/raw"}},
		"test block": {change: func(te *testEnv) {
			te.replace("  cleanup {", "  test \"nginx\" {\n    inline = [\"true\"]\n  }\n  cleanup {")
		}, want: []string{"base/test"}},
		"smoke_test switch": {change: func(te *testEnv) {
			te.replace("  cleanup {", "  smoke_test {\n    dns = false\n  }\n  cleanup {")
		}, want: []string{"base/test"}},
		// Excluded: they change how a step runs or where its result goes, not the result.
		"memory and cpus": {change: func(te *testEnv) {
			te.replace(`memory    = "512MiB"`, `memory    = "2GiB"`)
			te.replace(`cpus      = 1`, `cpus      = 4`)
		}},
		"output path version": {vars: []config.VarArg{{Name: "version", Value: "2"}}},
		"comments and layout": {change: func(te *testEnv) {
			te.replace(`image "base" {`, "# a comment\nimage \"base\" {\n\n")
		}},
		"timeouts and accelerator": {change: func(te *testEnv) {
			te.replace(`cpus      = 1`, "cpus = 1\n    accelerator = \"tcg\"\n    boot_timeout = \"1h\"")
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			te := newTestEnv(t)
			te.writeBase()
			before := keysOf(te.plan(te.load()))
			if tc.change != nil {
				tc.change(te)
			}
			after := keysOf(te.plan(te.load(tc.vars...)))
			var changed []string
			for _, id := range all {
				newID := id
				if name == "image name (hostname)" {
					newID = "base2" + strings.TrimPrefix(id, "base")
				}
				if before[id] != after[newID] {
					changed = append(changed, id)
				}
			}
			want := tc.want
			if name == "image name (hostname)" {
				want = append([]string{"base/seed"}, bootOn...)
			}
			if strings.Join(changed, " ") != strings.Join(want, " ") {
				t.Errorf("keys changed for\n  %v\nwant\n  %v", changed, want)
			}
		})
	}
}

func (te *testEnv) replace(old, new string) {
	te.t.Helper()
	p := filepath.Join(te.dir, "main.imgform.hcl")
	b, err := os.ReadFile(p)
	if err != nil {
		te.t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		te.t.Fatalf("config has no %q", old)
	}
	te.write("main.imgform.hcl", strings.Replace(string(b), old, new, 1))
}

func TestDebugKeysLogsEveryInput(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	rec := newRecorder()
	e := te.engine(rec)
	e.DebugKeys = true
	if _, err := e.Plan(context.Background(), te.load()); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(rec.messages, "\n")
	for _, want := range []string{
		"key base/provision/two: script scripts/two.sh = sha256:",
		"key base/provision/one: kind = provision/v1",
		"key base/boot: step base/seed = ",
		"key base/export/raw: output = {\"format\":\"raw\"",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("debug log lacks %q", want)
		}
	}
}

// The plan explains a changed key from its typed inputs: the engine words steps, files and variables, the kinds
// their own inputs (the cleanup script, the source, the checks).
func TestPlanExplainsChangedInputs(t *testing.T) {
	cases := map[string]struct {
		change func(te *testEnv)
		vars   []config.VarArg
		step   string
		want   []string
	}{
		"network match": {change: func(te *testEnv) { te.replace(`Name = "en*"`, `Name = "eth*"`) }, step: "base/cleanup",
			want: []string{"the cleanup script changed (cleanup or network blocks, or imgform's cleanup)", `it builds on provision "three", which will run`}},
		"source content": {change: func(te *testEnv) { makeDisk(te.t, filepath.Join(te.dir, "disk.raw"), 0x22) }, step: "base/fetch",
			want: []string{"the source file disk.raw changed"}},
		"variable": {vars: []config.VarArg{{Name: "greeting", Value: "bye"}}, step: "base/provision/one",
			want: []string{"its provisioner configuration changed", "variable greeting changed"}},
		"script": {change: func(te *testEnv) { te.write("scripts/two.sh", "#!/bin/sh\necho 2\n") }, step: "base/provision/two",
			want: []string{"script scripts/two.sh changed"}},
		"test block": {change: func(te *testEnv) {
			te.replace("  cleanup {", "  test \"nginx\" {\n    inline = [\"true\"]\n  }\n  cleanup {")
		}, step: "base/test", want: []string{`the test nginx block changed`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			te := newTestEnv(t)
			te.writeBase()
			mustApply(t, te, te.load())
			if tc.change != nil {
				tc.change(te)
			}
			sp := te.plan(te.load(tc.vars...)).Step(tc.step)
			if sp == nil || sp.Action != ActionRun {
				t.Fatalf("%s does not run: %+v", tc.step, sp)
			}
			got := strings.Join(sp.Reasons[1:], "\n")
			if got != strings.Join(tc.want, "\n") {
				t.Errorf("reasons of %s:\n%s\nwant\n%s", tc.step, got, strings.Join(tc.want, "\n"))
			}
		})
	}
}

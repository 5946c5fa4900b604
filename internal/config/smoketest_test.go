package config

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestSmokeTestAndTestBlocks(t *testing.T) {
	const src = `
image "base" {
  source {
    path = "disk.raw"
  }
  %s
  output "raw" {
    format = "raw"
    path   = "dist/base.raw"
  }
}
`
	cases := map[string]struct {
		body    string
		want    SmokeTest
		tests   []Test
		hasStep bool
	}{
		"defaults: every check on": {
			want: SmokeTest{Enabled: true, CloudInit: true, MachineID: true, SSHHostKeys: true, BuildUser: true, Network: true,
				DNS: true, BuildTraces: true}, hasStep: true,
		},
		"one check off and a query": {
			body: "smoke_test {\n    dns_query = \"deb.debian.org\"\n    network = false\n  }",
			want: SmokeTest{Enabled: true, CloudInit: true, MachineID: true, SSHHostKeys: true, BuildUser: true,
				DNS: true, BuildTraces: true, DNSQuery: "deb.debian.org"}, hasStep: true,
		},
		"all off, no test: no test step": {
			body: "smoke_test {\n    enabled = false\n  }",
			want: SmokeTest{Enabled: false, CloudInit: true, MachineID: true, SSHHostKeys: true, BuildUser: true, Network: true,
				DNS: true, BuildTraces: true},
		},
		"all off, one test: a test step": {
			body: "smoke_test {\n    enabled = false\n  }\n  test \"nginx\" {\n    inline = [\"systemctl is-active nginx\"]\n    sudo = true\n    timeout = \"2m\"\n  }\n" +
				"  test \"cis\" {\n    script = \"cis.sh\"\n  }",
			want: SmokeTest{Enabled: false, CloudInit: true, MachineID: true, SSHHostKeys: true, BuildUser: true, Network: true,
				DNS: true, BuildTraces: true},
			tests: []Test{{Name: "nginx", Inline: []string{"systemctl is-active nginx"}, Sudo: true, Timeout: 2 * time.Minute},
				{Name: "cis", Script: "cis.sh", Timeout: DefaultTestTimeout}},
			hasStep: true,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeTestFile(t, dir, "main.imgform.hcl", fmt.Sprintf(src, tc.body))
			writeTestFile(t, dir, "disk.raw", "x")
			writeTestFile(t, dir, "cis.sh", "#!/bin/sh\n")
			cfg, diags := Load(dir, LoadOptions{Env: []string{}})
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			img := cfg.Images[0]
			got := img.SmokeTest
			got.DeclRange, got.VarRefs = tc.want.DeclRange, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("smoke_test %+v\nwant %+v", got, tc.want)
			}
			var tests []Test
			for _, ts := range img.Tests {
				c := *ts
				c.DeclRange, c.VarRefs = tc.want.DeclRange, nil
				tests = append(tests, c)
			}
			if !reflect.DeepEqual(tests, tc.tests) {
				t.Errorf("tests %+v\nwant %+v", tests, tc.tests)
			}
			if img.HasTestStep() != tc.hasStep {
				t.Errorf("HasTestStep %v", img.HasTestStep())
			}
		})
	}
}

// A derived image inherits the network blocks of the images it derives from, for its test step.
func TestDerivedImagesInheritNetworks(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "disk.raw", "x")
	writeTestFile(t, dir, "main.imgform.hcl", `
image "base" {
  source {
    path = "disk.raw"
  }
  network "50-default" {
    match = { Name = "en*" }
  }
}
image "mid" {
  source {
    image = image.base
  }
  network "60-second" {
    match = { Name = "eth1" }
  }
}
image "leaf" {
  source {
    image = image.mid
  }
}
`)
	cfg, diags := Load(dir, LoadOptions{Env: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	names := func(img string) string {
		var out []string
		for _, n := range cfg.Image(img).InheritedNetworks {
			out = append(out, n.Name)
		}
		return fmt.Sprint(out)
	}
	for img, want := range map[string]string{"base": "[]", "mid": "[50-default]", "leaf": "[50-default 60-second]"} {
		if got := names(img); got != want {
			t.Errorf("%s inherits %s, want %s", img, got, want)
		}
	}
}

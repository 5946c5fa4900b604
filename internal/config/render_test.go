package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// checkGolden compares got with testdata/golden/name, or rewrites the file with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./config -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; if the change is intended, run go test ./config -update\n--- got ---\n%s\n--- want ---\n%s", name, got, want)
	}
}

// exampleEnv keeps the developer's own IMGFORM_VAR_* settings out of the tests.
var exampleEnv = []string{}

func loadExample(t *testing.T) *Config {
	t.Helper()
	cfg, diags := Load(filepath.Join("..", "..", "examples", "debian-12-base"), LoadOptions{Env: exampleEnv})
	if diags.HasErrors() {
		t.Fatalf("example does not load: %s", diags.Error())
	}
	return cfg
}

func TestGoldenExampleUserData(t *testing.T) {
	img := loadExample(t).Image("debian-12-base")
	for name, build := range map[string]*BuildUser{
		"debian-12-base.user-data":       nil,
		"debian-12-base.build.user-data": {Name: "imgform", AuthorizedKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGolden imgform-build"},
	} {
		t.Run(name, func(t *testing.T) {
			got, err := img.RenderUserData(build)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, name, got)
		})
	}
}

func TestGoldenExampleNetworkUnits(t *testing.T) {
	img := loadExample(t).Image("debian-12-base")
	if len(img.Networks) != 1 {
		t.Fatalf("want 1 network unit, got %d", len(img.Networks))
	}
	for _, n := range img.Networks {
		got, err := n.Render()
		if err != nil {
			t.Fatal(err)
		}
		checkGolden(t, n.FileName(), got)
	}
}

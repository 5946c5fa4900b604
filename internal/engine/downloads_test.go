package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/remote"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
)

// downloadConfig is baseConfig with provisioner "two" copying two guest files out, one into a folder.
var downloadConfig = strings.Replace(baseConfig, `    script = "scripts/two.sh"
`, `    script = "scripts/two.sh"
    file {
      direction   = "download"
      source      = "/run/packages.txt"
      destination = "dist/packages.txt"
    }
    file {
      direction   = "download"
      source      = "/var/lib/sbom.json"
      destination = "reports/"
    }
`, 1)

func (te *testEnv) writeDownloads() {
	te.t.Helper()
	te.writeBase()
	te.write("main.imgform.hcl", downloadConfig)
}

func (te *testEnv) readFile(name string) string {
	te.t.Helper()
	b, err := os.ReadFile(filepath.Join(te.dir, name))
	if err != nil {
		te.t.Fatal(err)
	}
	return string(b)
}

func wrote(rec *recorder) []string {
	var out []string
	for _, m := range rec.messages {
		if strings.HasPrefix(m, "wrote ") {
			out = append(out, strings.Fields(m)[1])
		}
	}
	return out
}

// A downloaded file is kept with its step's layer and written by every apply that finds it missing or
// changed, also when every step is cached; a new destination needs no build, another guest file does.
func TestDownloadsWrittenFromTheCache(t *testing.T) {
	te := newTestEnv(t)
	te.writeDownloads()
	cfg := te.load()
	two := te.plan(cfg).Step("base/provision/two")
	if got := strings.Join(two.Downloads, " "); got != "dist/packages.txt reports/sbom.json" {
		t.Errorf("the plan's downloads of provision two: %q", got)
	}
	_, rec, err := te.apply(cfg)
	if err != nil {
		t.Fatal(err)
	}
	key := mustKey(t, two.Key)
	if got := te.readFile("dist/packages.txt"); got != guestFile("/run/packages.txt", key) {
		t.Errorf("dist/packages.txt: %q", got)
	}
	if got := te.readFile("reports/sbom.json"); got != guestFile("/var/lib/sbom.json", key) {
		t.Errorf("reports/sbom.json: %q", got)
	}
	if got := strings.Join(wrote(rec), " "); got != "dist/packages.txt reports/sbom.json" {
		t.Errorf("the apply reported writing %q", got)
	}

	// Unchanged: nothing runs, nothing is written.
	_, rec, err = te.apply(te.load())
	if err != nil || len(rec.ran()) != 0 || len(wrote(rec)) != 0 {
		t.Fatalf("second apply: ran %v, wrote %v: %v", rec.ran(), wrote(rec), err)
	}

	// One removed, one edited: both come back from the cached layer.
	if err := os.Remove(filepath.Join(te.dir, "dist/packages.txt")); err != nil {
		t.Fatal(err)
	}
	te.write("reports/sbom.json", "edited\n")
	_, rec, err = te.apply(te.load())
	if err != nil || len(rec.ran()) != 0 || len(wrote(rec)) != 2 {
		t.Fatalf("apply after removing and editing: ran %v, wrote %v: %v", rec.ran(), wrote(rec), err)
	}
	if got := te.readFile("reports/sbom.json"); got != guestFile("/var/lib/sbom.json", key) {
		t.Errorf("the edited download was not written again: %q", got)
	}

	// A new destination: the same key, the file at the new place.
	te.replace(`destination = "reports/"`, `destination = "sbom/bom.json"`)
	if p := te.plan(te.load()); p.ToRun != 0 {
		t.Errorf("a new destination plans %v", actions(p))
	}
	_, rec, err = te.apply(te.load())
	if err != nil || len(rec.ran()) != 0 || strings.Join(wrote(rec), " ") != "sbom/bom.json" {
		t.Fatalf("apply with a new destination: ran %v, wrote %v: %v", rec.ran(), wrote(rec), err)
	}

	// Another guest file: provisioner two and what follows it run again.
	te.replace(`source      = "/var/lib/sbom.json"`, `source      = "/var/lib/sbom.spdx"`)
	_, rec, err = te.apply(te.load())
	if err != nil || strings.Join(rec.ran(), " ") != "base/cleanup base/export/raw base/provision/three base/provision/two base/test" {
		t.Fatalf("apply with another guest file: ran %v: %v", rec.ran(), err)
	}
	if got := te.readFile("sbom/bom.json"); !strings.HasPrefix(got, "/var/lib/sbom.spdx ") {
		t.Errorf("sbom/bom.json: %q", got)
	}

	// A destination that names a folder without the final slash fails the apply with a hint, and leaves
	// the folder as it was.
	te.write("reports/keep", "mine\n")
	te.replace(`destination = "sbom/bom.json"`, `destination = "reports"`)
	_, _, err = te.apply(te.load())
	if err == nil || !strings.Contains(err.Error(), "reports: is a folder: end the destination with / to write sbom.spdx into it") {
		t.Errorf("a folder as the destination: %v", err)
	}
	if got := te.readFile("reports/keep"); got != "mine\n" {
		t.Errorf("the folder's file changed: %q", got)
	}
}

// A runner that takes everything from the remote cache downloads the outputs, not the layers below them:
// it pulls just the downloaded files of a layer's object, checked against their digests.
func TestDownloadsFromTheRemoteCache(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	a, b := newTestEnv(t), newTestEnv(t)
	a.writeDownloads()
	b.writeDownloads()
	if _, rec, err := a.applyRemote(openRemote(t, reg, remote.ReadWrite)); err != nil {
		t.Fatalf("A's apply: %v %v", err, rec.errs)
	}
	rcB := openRemote(t, reg, remote.ReadOnly)
	p := b.planRemote(rcB)
	_, rec, err := b.applyRemote(rcB)
	if err != nil || len(rec.ran()) != 0 {
		t.Fatalf("B's apply: ran %v: %v %v", rec.ran(), err, rec.errs)
	}
	if _, ok, _ := b.store.Lookup(mustKey(t, p.Step("base/provision/two").Key)); ok {
		t.Error("B pulled the layer of provision two, which it does not need")
	}
	for _, f := range []string{"dist/packages.txt", "reports/sbom.json"} {
		if got, want := b.readFile(f), a.readFile(f); got != want {
			t.Errorf("B's %s: %q, A's %q", f, got, want)
		}
	}
	if !strings.Contains(strings.Join(rec.messages, "\n"), "pulled from the remote cache") {
		t.Errorf("B did not say where its downloads came from: %q", rec.messages)
	}
	// Unchanged on B: nothing written again.
	if _, rec, err := b.applyRemote(rcB); err != nil || len(wrote(rec)) != 0 {
		t.Errorf("B's second apply: wrote %v: %v", wrote(rec), err)
	}
}

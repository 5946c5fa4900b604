package engine

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/remote"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
)

// openRemote connects to the test registry's repository "imgform-cache".
func openRemote(t *testing.T, reg *registrytest.Registry, mode remote.Mode) *remote.Cache {
	t.Helper()
	ref, err := remote.Parse("oci://" + reg.Host + "/imgform-cache")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := remote.Open(context.Background(), ref, remote.Options{Mode: mode, Getenv: func(string) string { return "" },
		DockerConfig: filepath.Join(t.TempDir(), "config.json")})
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func (te *testEnv) applyRemote(rc *remote.Cache) (*Result, *recorder, error) {
	te.t.Helper()
	rec := newRecorder()
	e := te.engine(rec)
	e.Remote = rc
	res, err := e.Apply(context.Background(), te.load())
	return res, rec, err
}

func (te *testEnv) planRemote(rc *remote.Cache) *Plan {
	te.t.Helper()
	e := te.engine(nil)
	e.Remote = rc
	p, err := e.Plan(context.Background(), te.load())
	if err != nil {
		te.t.Fatal(err)
	}
	return p
}

// remoteActions is actions with "cached (remote)" for the steps the remote provides.
func remoteActions(p *Plan) string {
	var out []string
	for _, ip := range p.Images {
		for _, sp := range ip.Steps {
			a := string(sp.Action)
			if sp.Remote != nil {
				a += "(remote)"
			}
			out = append(out, strings.TrimPrefix(sp.ID, "base/")+"="+a)
		}
	}
	return strings.Join(out, " ")
}

// with lists "id=status" for the steps with one of the given statuses, sorted.
func (r *recorder) with(statuses ...StepStatus) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, st := range r.finished {
		for _, want := range statuses {
			if st == want {
				out = append(out, strings.TrimPrefix(id, "base/")+"="+string(st))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// Two machines, simulated by two empty stores, share a real registry: A builds and pushes; B's plan finds
// every step in the remote; B's apply downloads only the output and the test's report and writes the
// same bytes; a change of the last provisioner on B pulls only the chain it builds on, builds the rest and
// pushes it, and A's plan then finds that in the remote.
func TestRemoteCacheBetweenTwoMachines(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	a, b := newTestEnv(t), newTestEnv(t)
	a.writeBase()
	b.writeBase()

	rcA := openRemote(t, reg, remote.ReadWrite)
	res, rec, err := a.applyRemote(rcA)
	if err != nil || res.Ran != 9 {
		t.Fatalf("A's apply: ran %d: %v %v", res.Ran, err, rec.errs)
	}
	if !strings.Contains(strings.Join(rec.messages, "\n"), "pushed 9 result(s)") {
		t.Errorf("A's apply did not report its pushes: %q", rec.messages)
	}

	rcB := openRemote(t, reg, remote.ReadWrite)
	p := b.planRemote(rcB)
	want := "fetch=cached(remote) seed=cached(remote) boot=cached(remote) provision/one=cached(remote) " +
		"provision/two=cached(remote) provision/three=cached(remote) cleanup=cached(remote) export/raw=cached(remote) test=cached(remote)"
	if got := remoteActions(p); got != want || p.ToRun != 0 || p.CachedRemote != 9 {
		t.Fatalf("B's plan:\n%s\nwant\n%s", got, want)
	}
	res, rec, err = b.applyRemote(rcB)
	if err != nil || res.Ran != 0 {
		t.Fatalf("B's apply: ran %d: %v %v", res.Ran, err, rec.errs)
	}
	if got := rec.with(StatusPulled, StatusRestored, StatusDone); got != "export/raw=pulled export/raw=restored test=pulled" &&
		got != "export/raw=restored test=pulled" {
		t.Errorf("B's apply: %s; want the output and the test's report pulled, nothing built", got)
	}
	outA, outB := filepath.Join(a.dir, "dist", "base-1.raw"), filepath.Join(b.dir, "dist", "base-1.raw")
	if sha256File(t, outA) != sha256File(t, outB) {
		t.Error("B's output differs from A's")
	}
	if m, err := os.ReadFile(filepath.Join(b.dir, "dist", "base.manifest.json")); err != nil || !strings.Contains(string(m), `"status": "passed"`) {
		t.Errorf("B's manifest does not carry A's passed test: %s %v", m, err)
	}
	for _, id := range []string{"base/boot", "base/provision/three", "base/cleanup"} {
		if _, ok, _ := b.store.Lookup(mustKey(t, p.Step(id).Key)); ok {
			t.Errorf("B pulled %s, which it does not need", id)
		}
	}
	if p := b.plan(b.load()); p.ToRun != 0 {
		t.Errorf("B's plan after the apply, without the remote: %v", actions(p))
	}

	b.write("main.imgform.hcl", strings.Replace(baseConfig, `destination = "/etc/motd"`, `destination = "/etc/motd.d"`, 1))
	p = b.planRemote(rcB)
	want = "fetch=cached(remote) seed=cached(remote) boot=cached(remote) provision/one=cached(remote) provision/two=cached(remote) " +
		"provision/three=run cleanup=run export/raw=run test=run"
	if got := remoteActions(p); got != want {
		t.Errorf("B's plan after a change of the last provisioner:\n%s\nwant\n%s", got, want)
	}
	res, rec, err = b.applyRemote(rcB)
	if err != nil || res.Ran != 4 {
		t.Fatalf("B's incremental apply: ran %d: %v %v", res.Ran, err, rec.errs)
	}
	if got := rec.with(StatusPulled, StatusDone); got != "cleanup=done export/raw=done provision/three=done provision/two=pulled seed=pulled test=done" {
		t.Errorf("B's incremental apply: %s", got)
	}
	a.write("main.imgform.hcl", strings.Replace(baseConfig, `destination = "/etc/motd"`, `destination = "/etc/motd.d"`, 1))
	p = a.planRemote(rcA)
	want = "fetch=cached seed=cached boot=cached provision/one=cached provision/two=cached " +
		"provision/three=cached(remote) cleanup=cached(remote) export/raw=cached(remote) test=cached(remote)"
	if got := remoteActions(p); got != want {
		t.Errorf("A's plan after B pushed:\n%s\nwant\n%s", got, want)
	}
}

// A read-only remote is used and never written; a blob damaged in the registry is detected, and the step
// is built from what the remote still has instead.
func TestRemoteCacheReadOnlyAndDamagedBlob(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	a, b, c := newTestEnv(t), newTestEnv(t), newTestEnv(t)
	for _, te := range []*testEnv{a, b, c} {
		te.writeBase()
	}
	// B, read-only and first: builds everything, pushes nothing.
	res, rec, err := b.applyRemote(openRemote(t, reg, remote.ReadOnly))
	if err != nil || res.Ran != 9 || strings.Contains(strings.Join(rec.messages, "\n"), "pushed") {
		t.Fatalf("read-only apply: ran %d, %v, %q", res.Ran, err, rec.messages)
	}
	if p := a.planRemote(openRemote(t, reg, remote.ReadOnly)); p.CachedRemote != 0 {
		t.Fatalf("a read-only apply pushed: %s", remoteActions(p))
	}
	if _, _, err := a.applyRemote(openRemote(t, reg, remote.ReadWrite)); err != nil {
		t.Fatal(err)
	}
	// Damage the output's file blob in the registry's storage: C's pull of it fails its digest check.
	key := mustKey(t, a.plan(a.load()).Step("base/export/raw").Key)
	damaged := 0
	for _, l := range manifestLayers(t, reg, "imgform-cache", remote.Tag(key)) {
		if err := os.WriteFile(reg.BlobPath(l), []byte("not the output"), 0o644); err != nil {
			t.Fatal(err)
		}
		damaged++
	}
	if damaged == 0 {
		t.Fatal("found no blob of the output to damage")
	}
	res, rec, err = c.applyRemote(openRemote(t, reg, remote.ReadOnly))
	if err != nil {
		t.Fatalf("apply over a damaged blob: %v", err)
	}
	if !strings.Contains(strings.Join(rec.messages, "\n"), "could not pull export") || rec.finished["base/export/raw"] != StatusDone {
		t.Errorf("the damaged output was not rebuilt: %q %v", rec.messages, rec.finished)
	}
	if sha256File(t, filepath.Join(a.dir, "dist", "base-1.raw")) == "" || res.Failed != 0 {
		t.Errorf("result %+v", res)
	}
	if _, ok, _ := c.store.Lookup(key); ok {
		t.Error("a read-only apply kept an output object to push")
	}
}

// manifestLayers reads the layer digests of a tag's manifest straight from the registry's storage.
func manifestLayers(t *testing.T, reg *registrytest.Registry, repo, tag string) []string {
	t.Helper()
	link, err := os.ReadFile(filepath.Join(reg.Root, "docker", "registry", "v2", "repositories", repo, "_manifests", "tags", tag, "current", "link"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(reg.BlobPath(strings.TrimSpace(string(link))))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// gzipTarFiles reads a tar+gzip layer from a blob file: name to content.
func gzipTarFiles(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if files[hdr.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
}

// stopOnFinish is a recorder that stops the registry when a given step finishes.
type stopOnFinish struct {
	*recorder
	id   string
	stop func()
	once sync.Once
}

func (s *stopOnFinish) StepFinished(sp *StepPlan, status StepStatus, d time.Duration, err error) {
	s.recorder.StepFinished(sp, status, d, err)
	if sp.ID == s.id {
		s.once.Do(s.stop)
	}
}

// The registry goes away in the middle of an apply: the build succeeds with warnings about the pushes,
// and the next apply, with nothing to build, pushes what is missing.
func TestRemoteCacheRegistryStoppedMidApply(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	a, b := newTestEnv(t), newTestEnv(t)
	a.writeBase()
	b.writeBase()
	rc := openRemote(t, reg, remote.ReadWrite)
	hooks := &stopOnFinish{recorder: newRecorder(), id: "base/provision/one", stop: func() { reg.Stop(t) }}
	e := a.engine(hooks)
	e.Remote = rc
	res, err := e.Apply(context.Background(), a.load())
	if err != nil || res.Ran != 9 {
		t.Fatalf("apply with the registry stopped midway: ran %d: %v", res.Ran, err)
	}
	if !strings.Contains(strings.Join(hooks.messages, "\n"), "could not push") {
		t.Errorf("no warning about the failed pushes: %q", hooks.messages)
	}
	reg.Restart(t)
	res, rec, err := a.applyRemote(rc)
	if err != nil || res.Ran != 0 || !strings.Contains(strings.Join(rec.messages, "\n"), "pushed") {
		t.Fatalf("the next apply: ran %d, %v, %q", res.Ran, err, rec.messages)
	}
	if p := b.planRemote(openRemote(t, reg, remote.ReadOnly)); p.CachedRemote != 9 {
		t.Errorf("after the second apply the remote lacks results: %s", remoteActions(p))
	}
}

// An output with a publish reference is pushed once its image passed its test, remembered in the record
// (the next apply reads nothing and pushes nothing), and pushed again when the file changes.
func TestPublishOutput(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	te := newTestEnv(t)
	te.writeBase()
	ref := "oci://" + reg.Host + "/images/base:1"
	kubevirt := "oci://" + reg.Host + "/kubevirt/base:1"
	te.write("main.imgform.hcl", strings.Replace(baseConfig, `path   = "dist/base-${var.version}.raw"`,
		`path    = "dist/base-${var.version}.raw"
    publish = "`+ref+`"
    publish_container_disk = "`+kubevirt+`"`, 1))
	_, rec, err := te.apply(te.load())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{ref, kubevirt} {
		if !strings.Contains(strings.Join(rec.messages, "\n"), "published dist/base-1.raw to "+r) {
			t.Fatalf("not published to %s: %q", r, rec.messages)
		}
	}
	output, err := os.ReadFile(filepath.Join(te.dir, "dist", "base-1.raw"))
	if err != nil {
		t.Fatal(err)
	}
	// The containerDisk holds the output's bytes under disk/, as KubeVirt reads them.
	cd := manifestLayers(t, reg, "kubevirt/base", "1")
	if len(cd) != 1 {
		t.Fatalf("containerDisk has layers %v, want one", cd)
	}
	if files := gzipTarFiles(t, reg.BlobPath(cd[0])); !bytes.Equal(files["disk/base-1.raw"], output) {
		t.Errorf("containerDisk layer holds %d files; disk/base-1.raw differs from the output", len(files))
	}
	if left, _ := filepath.Glob(filepath.Join(te.store.Dir(), "work", "publish-*")); len(left) != 0 {
		t.Errorf("publish left work folders: %v", left)
	}
	layers := manifestLayers(t, reg, "images/base", "1")
	if len(layers) != 3 {
		t.Fatalf("published artifact has layers %v, want the disk, the manifest and the sums", layers)
	}
	disk, err := os.ReadFile(reg.BlobPath(layers[0]))
	if err != nil || len(disk) == 0 {
		t.Fatalf("disk blob: %v", err)
	}
	if got, want := layers[0], "sha256:"+sha256File(t, filepath.Join(te.dir, "dist", "base-1.raw")); got != want {
		t.Errorf("the disk layer is %s, want the output's digest %s", got, want)
	}
	_, rec, err = te.apply(te.load())
	if err != nil || strings.Contains(strings.Join(rec.messages, "\n"), "published") {
		t.Errorf("a no-op apply published again: %v %q", err, rec.messages)
	}
	te.write("scripts/two.sh", "#!/bin/sh\necho changed\n")
	_, rec, err = te.apply(te.load())
	if err != nil || !strings.Contains(strings.Join(rec.messages, "\n"), "published dist/base-1.raw") {
		t.Errorf("a changed output was not published again: %v %q", err, rec.messages)
	}
}

// A test's report travels without its layer, so the layer is not its parent; it still counts only for the
// layer it tested: once that layer is built again, the test runs again.
func TestTestReportStaleWhenItsLayerIsRebuilt(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	mustApply(t, te, te.load())
	cleanup := mustKey(t, te.plan(te.load()).Step("base/cleanup").Key)
	obj, ok, err := te.store.Lookup(cleanup)
	if err != nil || !ok {
		t.Fatalf("cleanup layer: %v %v", ok, err)
	}
	if err := os.RemoveAll(filepath.Dir(obj.Dir())); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(te.dir, "dist", "base-1.raw")); err != nil {
		t.Fatal(err)
	}
	p := te.plan(te.load())
	want := "base/fetch=cached base/seed=cached base/boot=cached base/provision/one=cached base/provision/two=cached " +
		"base/provision/three=cached base/cleanup=run base/export/raw=run base/test=run"
	if got := strings.Join(actions(p), " "); got != want {
		t.Fatalf("plan after the final layer was lost:\n%s\nwant\n%s", got, want)
	}
	_, rec := mustApply(t, te, te.load())
	if got := strings.Join(rec.ran(), " "); got != "base/cleanup base/export/raw base/test" {
		t.Errorf("apply ran %s", got)
	}
}

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

func mustApply(t *testing.T, te *testEnv, cfg *config.Config) (*Result, *recorder) {
	t.Helper()
	res, rec, err := te.apply(cfg)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res, rec
}

func reasonsOf(p *Plan, id string) string {
	sp := p.Step(id)
	if sp == nil {
		return "<no step " + id + ">"
	}
	return strings.Join(sp.Reasons, "; ")
}

// A full apply runs every step once; a second apply and plan run nothing; a change to the k-th provisioner
// re-runs it, the later ones, cleanup and the export, resuming from the cached layer before it.
func TestApplyIncremental(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	res, rec := mustApply(t, te, te.load())
	if res.Ran != 9 || res.Failed != 0 {
		t.Fatalf("first apply: ran %d, failed %d: %v", res.Ran, res.Failed, rec.errs)
	}
	out := filepath.Join(te.dir, "dist", "base-1.raw")
	fi, err := os.Stat(out)
	if err != nil || fi.Size() != 64<<20 {
		t.Fatalf("output: %v, %v", fi, err)
	}
	if len(res.Outputs) != 1 || !res.Outputs[0].Written || res.Outputs[0].SHA256 != sha256File(t, out) {
		t.Fatalf("outputs %+v", res.Outputs)
	}

	sums, err := os.ReadFile(filepath.Join(te.dir, "dist", "SHA256SUMS"))
	if err != nil || string(sums) != res.Outputs[0].SHA256+"  base-1.raw\n" {
		t.Errorf("SHA256SUMS %q, %v", sums, err)
	}
	manifest, err := os.ReadFile(filepath.Join(te.dir, "dist", "base.manifest.json"))
	if err != nil || !strings.Contains(string(manifest), res.Outputs[0].SHA256) || !strings.Contains(string(manifest), `"base/provision/two"`) {
		t.Errorf("manifest %s, %v", manifest, err)
	}
	if p := te.plan(te.load()); p.ToRun != 0 || p.Cached != 9 {
		t.Fatalf("plan after apply: %v", actions(p))
	}
	res, rec = mustApply(t, te, te.load())
	if res.Ran != 0 || len(rec.ran()) != 0 || te.guest.starts.Load() != 1 {
		t.Fatalf("second apply ran %v (guest started %d times)", rec.ran(), te.guest.starts.Load())
	}

	te.write("scripts/two.sh", "#!/bin/sh\necho changed\n")
	p := te.plan(te.load())
	want := []string{"base/fetch=cached", "base/seed=cached", "base/boot=cached", "base/provision/one=cached",
		"base/provision/two=run", "base/provision/three=run", "base/cleanup=run", "base/export/raw=run", "base/test=run"}
	if got := actions(p); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("plan after changing provisioner two:\n%v\nwant\n%v", got, want)
	}
	for id, want := range map[string]string{
		"base/provision/two":   "script scripts/two.sh changed",
		"base/provision/three": `it builds on provision "two", which will run`,
		"base/cleanup":         `it builds on provision "three", which will run`,
		"base/export/raw":      "it builds on cleanup, which will run",
		"base/test":            "it builds on cleanup, which will run",
	} {
		if r := reasonsOf(p, id); !strings.Contains(r, want) || !strings.Contains(r, "no result for key") && id != "base/export/raw" && id != "base/test" {
			t.Errorf("%s reasons %q, want %q", id, r, want)
		}
	}
	before := sha256File(t, out)
	res, rec = mustApply(t, te, te.load())
	wantRan := []string{"base/cleanup", "base/export/raw", "base/provision/three", "base/provision/two", "base/test"}
	if strings.Join(rec.ran(), " ") != strings.Join(wantRan, " ") {
		t.Fatalf("incremental apply ran %v, want %v", rec.ran(), wantRan)
	}
	last := te.guest.sessions[len(te.guest.sessions)-1]
	if last[0] != "base/provision/two" {
		t.Errorf("the VM session started at %s, want provision two (resuming from the cached layer of one)", last[0])
	}
	if sha256File(t, out) == before {
		t.Error("the output did not change")
	}
	if res, _ := mustApply(t, te, te.load()); res.Ran != 0 {
		t.Errorf("apply after the incremental one ran %d steps", res.Ran)
	}
}

func TestPlanExplainsVariablesAndOutputs(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	mustApply(t, te, te.load())

	p := te.plan(te.load(config.VarArg{Name: "greeting", Value: "bye"}))
	if r := reasonsOf(p, "base/provision/one"); !strings.Contains(r, "variable greeting changed") || !strings.Contains(r, "its provisioner configuration changed") {
		t.Errorf("reasons %q", r)
	}

	out := filepath.Join(te.dir, "dist", "base-1.raw")
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	p = te.plan(te.load())
	if got := strings.Join(actions(p), " "); !strings.Contains(got, "base/export/raw=run") || p.ToRun != 1 {
		t.Fatalf("after removing the output: %v", got)
	}
	if r := reasonsOf(p, "base/export/raw"); r != "output dist/base-1.raw was removed" {
		t.Errorf("reason %q", r)
	}
	mustApply(t, te, te.load())
	if err := os.WriteFile(out, []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := reasonsOf(te.plan(te.load()), "base/export/raw"); r != "output dist/base-1.raw was modified since the last apply" {
		t.Errorf("reason %q", r)
	}

	// A new output path (the version variable) writes a new file from the cached layers.
	p = te.plan(te.load(config.VarArg{Name: "version", Value: "2"}))
	if p.ToRun != 1 || !strings.Contains(reasonsOf(p, "base/export/raw"), "has not been written") {
		t.Errorf("new output path: %v %q", actions(p), reasonsOf(p, "base/export/raw"))
	}
}

// A derived image starts from its parent's final layer and re-runs when the parent does.
func TestDerivedImage(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	te.write("child.imgform.hcl", `
image "child" {
  source {
    image = image.base
  }
  provision "extra" {
    inline = ["echo child"]
  }
  output "qcow2" {
    format      = "qcow2"
    compression = "zstd"
    path        = "dist/child.qcow2.zst"
  }
}
`)
	res, rec := mustApply(t, te, te.load())
	if res.Ran != 9+6 || res.Failed != 0 {
		t.Fatalf("ran %d failed %d: %v", res.Ran, res.Failed, rec.errs)
	}
	if _, err := os.Stat(filepath.Join(te.dir, "dist", "child.qcow2.zst")); err != nil {
		t.Fatal(err)
	}
	te.write("files/motd", "changed\n")
	p := te.plan(te.load())
	for _, id := range []string{"base/provision/three", "child/boot", "child/provision/extra", "child/cleanup", "child/export/qcow2"} {
		if p.Step(id).Action != ActionRun {
			t.Errorf("%s: %s, want run", id, p.Step(id).Action)
		}
	}
	if p.Step("child/seed").Action != ActionCached {
		t.Errorf("child/seed: %s", p.Step("child/seed").Action)
	}
	if r := reasonsOf(p, "child/boot"); !strings.Contains(r, `it builds on image "base", which will run`) {
		t.Errorf("child/boot reasons %q", r)
	}
}

// A failed step keeps what its inputs produced; the next apply resumes after the last committed layer.
func TestFailedStepResumes(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	te.guest.failAt = "base/provision/two"
	res, rec, err := te.apply(te.load())
	if err == nil || !strings.Contains(err.Error(), "failed on purpose") {
		t.Fatalf("apply error %v", err)
	}
	if rec.finished["base/provision/two"] != StatusFailed || rec.finished["base/provision/three"] != StatusSkipped ||
		rec.finished["base/export/raw"] != StatusSkipped || rec.finished["base/provision/one"] != StatusDone {
		t.Fatalf("statuses %v", rec.finished)
	}
	if res.Failed != 1 {
		t.Errorf("failed %d", res.Failed)
	}
	if _, err := os.Stat(filepath.Join(te.dir, "dist", "base-1.raw")); !os.IsNotExist(err) {
		t.Errorf("an output exists after a failed build: %v", err)
	}
	p := te.plan(te.load())
	if p.Step("base/provision/one").Action != ActionCached || p.Step("base/provision/two").Action != ActionRun {
		t.Fatalf("plan after failure %v", actions(p))
	}
	te.guest.failAt = ""
	mustApply(t, te, te.load())
	last := te.guest.sessions[len(te.guest.sessions)-1]
	if last[0] != "base/provision/two" {
		t.Errorf("resumed at %s", last[0])
	}
}

// A disk_size smaller than the source is found only after the download; the error still says where
// disk_size is written, as the configuration's own errors do (file:line:col of the value).
func TestDiskSizeSmallerThanSourceSaysWhere(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	if err := os.Truncate(filepath.Join(te.dir, "disk.raw"), 128<<20); err != nil {
		t.Fatal(err)
	}
	_, rec, err := te.apply(te.load())
	want := filepath.Join(te.dir, "main.imgform.hcl") + ":17:17: disk_size 64MiB is smaller than the source image's virtual size of 134217728 bytes (disk.raw)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("apply error %v, want it to contain %q", err, want)
	}
	if got := rec.errs["base/fetch"]; rec.finished["base/fetch"] != StatusFailed || got == nil || !strings.HasPrefix(got.Error(), want) {
		t.Errorf("fetch finished %s with %v, want %q", rec.finished["base/fetch"], got, want)
	}
	var ce *step.ConfigError
	if !errors.As(err, &ce) || ce.Subject.Start.Line != 17 || ce.Subject.End.Column != 24 {
		t.Errorf("no ConfigError with the range of disk_size's value: %#v", ce)
	}
}

// Ctrl-C: a cancelled apply stops, keeps finished steps and reports the cancellation.
func TestApplyCancelled(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	ctx, cancel := context.WithCancel(context.Background())
	rec := newRecorder()
	h := &cancelOn{recorder: rec, id: "base/provision/one", cancel: cancel}
	_, err := te.engine(h).Apply(ctx, te.load())
	if err == nil {
		t.Fatal("no error after cancel")
	}
	if rec.finished["base/provision/one"] != StatusDone || rec.finished["base/export/raw"] == StatusDone {
		t.Errorf("statuses %v", rec.finished)
	}
	if p := te.plan(te.load()); p.Step("base/provision/one").Action != ActionCached {
		t.Errorf("finished step not kept: %v", actions(p))
	}
}

// cancelOn cancels the apply when a step finishes.
type cancelOn struct {
	*recorder
	id     string
	cancel func()
}

func (c *cancelOn) StepFinished(s *StepPlan, st StepStatus, d time.Duration, err error) {
	c.recorder.StepFinished(s, st, d, err)
	if s.ID == c.id {
		c.cancel()
	}
}

// TestProgressSavedAfterEachStep: while an apply still runs, everything that finished is already saved as
// if the apply had ended there, so an apply killed at that moment loses nothing that finished: the next
// plan finds the export cached (the record knows its file) and its SHA256SUMS written.
func TestProgressSavedAfterEachStep(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	te.write("child.imgform.hcl", `
image "child" {
  source {
    image = image.base
  }
  provision "extra" {
    inline = ["echo child"]
  }
}
`)
	rec := newRecorder()
	var checked bool
	h := &onFinished{recorder: rec, fn: func(s *StepPlan) {
		if s.ID != "base/export/raw" {
			return
		}
		checked = true
		p := te.plan(te.load())
		if a := p.Step("base/export/raw").Action; a != ActionCached {
			t.Errorf("during the apply, right after the export: plan says %s (%s)", a, reasonsOf(p, "base/export/raw"))
		}
		if _, err := os.Stat(filepath.Join(te.dir, "dist", "SHA256SUMS")); err != nil {
			t.Errorf("SHA256SUMS not written with the export: %v", err)
		}
	}}
	if _, err := te.engine(h).Apply(context.Background(), te.load()); err != nil {
		t.Fatal(err)
	}
	if !checked {
		t.Fatal("the export did not run")
	}
}

// onFinished calls fn after a step finished with status done.
type onFinished struct {
	*recorder
	fn func(*StepPlan)
}

func (o *onFinished) StepFinished(s *StepPlan, st StepStatus, d time.Duration, err error) {
	o.recorder.StepFinished(s, st, d, err)
	if st == StatusDone {
		o.fn(s)
	}
}

// The apply_finished event's outputs use the field names docs/plan-json.md gives.
func TestOutputResultJSON(t *testing.T) {
	b, err := json.Marshal(OutputResult{Image: "i", Name: "n", Path: "p", SHA256: "s", Size: 1, Written: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"image":"i","name":"n","path":"p","sha256":"s","size":1,"written":true,"verification":""}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
}

// A warning every VM session meets (the fallback to TCG) is shown once per apply.
func TestWarnOnce(t *testing.T) {
	rec := newRecorder()
	a := &applier{e: &Engine{Hooks: rec}}
	a.warnOnce("KVM does not run guests")
	a.warnOnce("KVM does not run guests")
	a.warnOnce("another")
	if len(rec.messages) != 2 {
		t.Errorf("messages %q, want each once", rec.messages)
	}
}

// A source whose qcow2 header names a file of the build host (a backing file, an external data file) is
// refused at the fetch, before QEMU or qemu-img opens it: nothing is stored and no VM starts.
func TestHostileSourceRefused(t *testing.T) {
	requireTools(t)
	for name, opts := range map[string][]string{
		"backing file":       {"-b", "/etc/hostname", "-F", "raw"},
		"external data file": {"-o", "data_file=/etc/hostname,data_file_raw=on"},
	} {
		t.Run(name, func(t *testing.T) {
			te := newTestEnv(t)
			te.writeBase()
			src := filepath.Join(te.dir, "disk.raw")
			if err := os.Remove(src); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"create", "-q", "-f", "qcow2"}, opts...)
			if err := run(context.Background(), te.dir, "qemu-img", append(args, src, "64M")...); err != nil {
				t.Fatal(err)
			}
			_, rec, err := te.apply(te.load())
			if err == nil || !strings.Contains(err.Error(), "QEMU would read") || !strings.Contains(err.Error(), "qemu-img convert") {
				t.Fatalf("apply error %v, want the refusal of a source that names a host file", err)
			}
			if rec.finished["base/fetch"] != StatusFailed || te.guest.starts.Load() != 0 {
				t.Errorf("fetch %s, %d VM sessions", rec.finished["base/fetch"], te.guest.starts.Load())
			}
			p := te.plan(te.load())
			if p.Step("base/fetch").Action != ActionRun {
				t.Errorf("the refused source was stored: fetch is %s", p.Step("base/fetch").Action)
			}
		})
	}
}

// Issue 12.7: a damaged record (cut short by a full disk, edited by hand) does not block the configuration
// for good: plan warns and plans as for a first apply, apply replaces the record, and nothing is rebuilt
// that is in the store.
func TestDamagedRecordIsReplaced(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	cfg := te.load()
	mustApply(t, te, cfg)
	paths, err := filepath.Glob(filepath.Join(te.store.Dir(), "records", "*.json"))
	if err != nil || len(paths) != 1 {
		t.Fatalf("records %v %v", paths, err)
	}
	if err := os.WriteFile(paths[0], []byte(`{"format_version": 1, "images": {`), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	p, err := te.engine(rec).Plan(context.Background(), te.load())
	if err != nil {
		t.Fatalf("plan with a damaged record: %v", err)
	}
	if !strings.Contains(strings.Join(rec.messages, "\n"), "damaged record") {
		t.Errorf("no warning about the damaged record: %q", rec.messages)
	}
	// The outputs are not known to be the last apply's any more: they are written again, the rest is cached.
	if p.ToRun != 1 || p.Step("base/export/raw").Action != ActionRun {
		t.Errorf("plan with a damaged record: %v", actions(p))
	}
	mustApply(t, te, te.load())
	if p := te.plan(te.load()); p.ToRun != 0 {
		t.Errorf("after the apply: %v", actions(p))
	}
	if problems, err := te.store.VerifyRecords(); err != nil || len(problems) != 0 {
		t.Errorf("records after the apply: %+v %v", problems, err)
	}
}

// gcOnPlanned runs a cache gc that removes everything it may as soon as the plan is made, as a concurrent
// `imgform cache gc` can.
type gcOnPlanned struct {
	*recorder
	t     *testing.T
	store *state.Store
	freed int
}

func (g *gcOnPlanned) Planned(p *Plan) {
	g.recorder.Planned(p)
	rep, err := g.store.GC(context.Background(), state.GCOptions{MaxSize: 1})
	if err != nil {
		g.t.Errorf("gc: %v", err)
	}
	g.freed = len(rep.Removed)
}

// Issue 12.8: apply holds every key of its plan before the plan looks them up, so a gc between the plan and
// the steps cannot remove a result the plan counted as cached (it failed with "not in the store").
func TestGCAfterPlanRemovesNothingTheApplyNeeds(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	mustApply(t, te, te.load())
	te.write("scripts/two.sh", "#!/bin/sh\necho 2\n")
	h := &gcOnPlanned{recorder: newRecorder(), t: t, store: te.store}
	res, err := te.engine(h).Apply(context.Background(), te.load())
	if err != nil {
		t.Fatalf("apply with a gc right after the plan: %v", err)
	}
	if h.freed == 0 {
		t.Error("the gc removed nothing: the old layers of provision two and after were free to go")
	}
	if res.Ran != 5 || res.Plan.Cached != 4 {
		t.Errorf("ran %d, cached %d: %v", res.Ran, res.Plan.Cached, actions(res.Plan))
	}
	// What the gc could take is the old provision two, cleanup and test of the first apply, nothing held.
	if p := te.plan(te.load()); p.ToRun != 0 {
		t.Errorf("after the apply: %v", actions(p))
	}
}

// editOnPlanned changes a file of the configuration right after the plan keyed it, as an editor saving
// during an apply does.
type editOnPlanned struct {
	*recorder
	t          *testing.T
	path, with string
}

func (e *editOnPlanned) Planned(p *Plan) {
	e.recorder.Planned(p)
	if err := os.WriteFile(e.path, []byte(e.with), 0o644); err != nil {
		e.t.Error(err)
	}
}

// Issue 12.4: a local source without a checksum is keyed by its content at plan time; if it changes before
// the fetch copies it, the fetch fails instead of storing the new content under the old key.
func TestLocalSourceEditedDuringApply(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	src := filepath.Join(te.dir, "disk.raw")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b[5000] ^= 0xff
	h := &editOnPlanned{recorder: newRecorder(), t: t, path: src, with: string(b)}
	_, err = te.engine(h).Apply(context.Background(), te.load())
	if err == nil || !strings.Contains(err.Error(), "source disk.raw changed while imgform ran") {
		t.Fatalf("apply with the source edited after the plan: %v", err)
	}
	if h.finished["base/fetch"] != StatusFailed {
		t.Errorf("fetch %s", h.finished["base/fetch"])
	}
	// The next plan keys the new content, and the apply builds it.
	mustApply(t, te, te.load())
}

package engine

import (
	"gitlab.com/imgform/imgform/internal/step"

	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/steps/export"
)

func (te *testEnv) manifest() export.Manifest {
	te.t.Helper()
	m, err := export.ReadManifest(filepath.Join(te.dir, "dist", "base.manifest.json"))
	if err != nil {
		te.t.Fatal(err)
	}
	return m
}

func (te *testEnv) sums() string {
	te.t.Helper()
	b, err := os.ReadFile(filepath.Join(te.dir, "dist", "SHA256SUMS"))
	if err != nil {
		te.t.Fatal(err)
	}
	return string(b)
}

// A failed check fails the apply with its name, keeps the output but marks it unverified in SHA256SUMS and
// the manifest, and is not cached: the next apply tests again (only the test), and a pass verifies.
func TestFailingTestMarksOutputsUnverified(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	te.guest.failCheck = "network"
	res, rec, err := te.apply(te.load())
	if err == nil || !strings.Contains(err.Error(), "network") {
		t.Fatalf("apply error %v, want one naming the network check", err)
	}
	if rec.finished["base/test"] != StatusFailed || rec.finished["base/export/raw"] != StatusDone {
		t.Errorf("statuses %v", rec.finished)
	}
	out := filepath.Join(te.dir, "dist", "base-1.raw")
	if _, err := os.Stat(out); err != nil {
		t.Fatalf("the output was not kept: %v", err)
	}
	if len(res.Outputs) != 1 || res.Outputs[0].Verification != export.VerificationFailed {
		t.Errorf("outputs %+v", res.Outputs)
	}
	if s := te.sums(); s != "# unverified: "+sha256File(t, out)+"  base-1.raw\n" {
		t.Errorf("SHA256SUMS %q", s)
	}
	m := te.manifest()
	if m.Verification.Status != export.VerificationFailed || len(m.Verification.Checks) != 2 ||
		m.Verification.Checks[1].Status != step.CheckFailed || m.Verification.Checks[1].Detail != "it fails here" {
		t.Errorf("manifest verification %+v", m.Verification)
	}

	p := te.plan(te.load())
	if got := strings.Join(actions(p), " "); !strings.HasSuffix(got, "base/cleanup=cached base/export/raw=cached base/test=run") || p.ToRun != 1 {
		t.Fatalf("plan after a failed test: %s", got)
	}
	te.guest.failCheck = ""
	res, rec = mustApply(t, te, te.load())
	if got := strings.Join(rec.ran(), " "); got != "base/test" {
		t.Errorf("apply after the fix ran %s, want only the test", got)
	}
	if s := te.sums(); s != sha256File(t, out)+"  base-1.raw\n" {
		t.Errorf("SHA256SUMS after a pass %q", s)
	}
	if m := te.manifest(); m.Verification.Status != export.VerificationPassed || m.Verification.TestKey != p.Step("base/test").Key {
		t.Errorf("manifest verification after a pass %+v", m.Verification)
	}
	if res.Outputs[0].Verification != export.VerificationPassed {
		t.Errorf("outputs %+v", res.Outputs)
	}
}

// -skip-tests: plan says so, apply boots nothing for the test, the outputs are marked skipped; a later
// apply without it tests them.
func TestSkipTests(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	e := te.engine(newRecorder())
	e.SkipTests = true
	p, err := e.Plan(context.Background(), te.load())
	if err != nil {
		t.Fatal(err)
	}
	if sp := p.Step("base/test"); !p.SkipTests || sp.Action != ActionSkip || !strings.Contains(strings.Join(sp.Reasons, ";"), "-skip-tests") {
		t.Fatalf("plan with -skip-tests: %s %v", sp.Action, sp.Reasons)
	}
	if _, err := e.Apply(context.Background(), te.load()); err != nil {
		t.Fatal(err)
	}
	if te.guest.tests.Load() != 0 {
		t.Error("a test ran under -skip-tests")
	}
	if !strings.HasPrefix(te.sums(), "# unverified: ") || te.manifest().Verification.Status != export.VerificationSkipped {
		t.Errorf("SHA256SUMS %q, manifest %+v", te.sums(), te.manifest().Verification)
	}
	_, rec := mustApply(t, te, te.load())
	if got := strings.Join(rec.ran(), " "); got != "base/test" || te.manifest().Verification.Status != export.VerificationPassed {
		t.Errorf("apply without -skip-tests ran %s; verification %+v", got, te.manifest().Verification)
	}
}

// A passed test is cached: when only the export runs again, the manifest still carries the test's report.
func TestCachedTestStillVerifiesAnExport(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	mustApply(t, te, te.load())
	if err := os.Remove(filepath.Join(te.dir, "dist", "base-1.raw")); err != nil {
		t.Fatal(err)
	}
	_, rec := mustApply(t, te, te.load())
	if got := strings.Join(rec.ran(), " "); got != "base/export/raw" || te.guest.tests.Load() != 1 {
		t.Errorf("ran %s, tests %d", got, te.guest.tests.Load())
	}
	m := te.manifest()
	if m.Verification.Status != export.VerificationPassed || len(m.Verification.Checks) != 2 {
		t.Errorf("verification %+v", m.Verification)
	}
	if strings.HasPrefix(te.sums(), "#") {
		t.Errorf("SHA256SUMS %q", te.sums())
	}
}

// An image whose checks are all switched off has no test step; its outputs are listed as usual.
func TestNoChecksNoTestStep(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	te.replace("  cleanup {", "  smoke_test {\n    enabled = false\n  }\n  cleanup {")
	p := te.plan(te.load())
	if p.Step("base/test") != nil {
		t.Fatalf("plan has a test step: %v", actions(p))
	}
	mustApply(t, te, te.load())
	if te.manifest().Verification.Status != export.VerificationDisabled || strings.HasPrefix(te.sums(), "#") {
		t.Errorf("manifest %+v, sums %q", te.manifest().Verification, te.sums())
	}
}

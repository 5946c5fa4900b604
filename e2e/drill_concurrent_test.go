//go:build drills

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withDir returns a drill on the same cache with another configuration folder.
func (d *drill) withDir(t *testing.T, dir string) *drill {
	logs := filepath.Join(d.logs, filepath.Base(dir))
	if err := os.MkdirAll(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	return &drill{t: t, bin: d.bin, img: d.img, dir: dir, cache: d.cache, logs: logs}
}

// Drill 3: two applies of the same configuration at once on one cache, and a third of a copy of it in
// another folder. All exit 0 and end with the same correct output; every step is built once; the cache
// verifies clean; no QEMU is left. The three applies are the golden build the other drills start from.
func TestDrill3ConcurrentApply(t *testing.T) {
	golden(t)
	b := goldenBuild
	d := &drill{t: t, bin: drillBinary(t), img: drillImage(t), dir: b.dir, cache: b.cache, logs: b.logs, tests: true}
	d2 := d.withDir(t, b.copyDir)
	d2.tests = true
	runs := b.runs
	if b.downloads != 1 {
		t.Errorf("the source was downloaded %d times, want once", b.downloads)
	}
	done := map[string][]string{} // step -> the runs that reported it done
	for _, r := range runs {
		if r.r.code != 0 {
			t.Errorf("%s: %s\n%s", r.name, r.r, r.r.stderr)
		}
		for _, e := range r.ev {
			if e.Type == "step_finished" && e.Status == "done" {
				done[e.Step] = append(done[e.Step], r.name)
			}
			if e.Type == "message" && strings.Contains(e.Line, "waiting for lock") {
				t.Logf("%s: %s", r.name, e.Line)
			}
		}
	}
	for step, by := range done {
		want := 1
		if strings.Contains(step, "/export/") {
			want = 2 // once per configuration folder
		}
		if len(by) != want {
			// A step that waited for the other apply's lock and then found its result is "cached" (as the
			// disk steps report it), not "done".
			t.Errorf("%s is reported done by %d applies (%v), want %d: an apply that waited for another's lock "+
				"and reused its result must report it cached", step, len(by), by, want)
		}
	}
	if len(done) != 7 { // fetch, seed, boot, motd, cleanup, export, test
		t.Errorf("built steps: %v", done)
	}

	shaA := checkOutputs(t, d.outDir())
	shaB := checkOutputs(t, d2.outDir())
	for _, r := range runs {
		outs := finishedOutputs(r.ev)
		if len(outs) != 1 {
			t.Errorf("%s: outputs %+v", r.name, outs)
			continue
		}
		if outs[0].SHA256 != shaA {
			t.Errorf("%s: output sha256 %s, the file has %s", r.name, outs[0].SHA256, shaA)
		}
	}
	if shaA != shaB {
		t.Errorf("the two folders have different outputs from the same layers: %s and %s", shaA, shaB)
	}
	noQEMU(t, d.cache, 10*time.Second)
	d.verifyClean("after the concurrent applies")
	if left := d.tempLeftovers(); len(left) > 0 {
		t.Errorf("left in the cache: %v", left)
	}
	if p := d.plan(); p.ToRun != 0 {
		t.Errorf("a plan after the concurrent applies would run: %s", p.actions())
	}
	if p := d2.plan(); p.ToRun != 0 {
		t.Errorf("a plan of the copy after the concurrent applies would run: %s", p.actions())
	}
}

//go:build drills

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Drill 5: the output folder fills up during the export. apply fails with an error that says so and names
// the folder, exits non-zero, leaves no output and no temp file in the folder, the cache stays clean, and
// once the output points to a folder with room the next apply reuses every cached step and only exports.
func TestDrill5DiskFull(t *testing.T) {
	requireRoot(t)
	d := newDrill(t, drillConfigOptions{})
	d.useGolden()

	// How much room the export needs: the compressed output (the flattened intermediate goes to the
	// cache, or next to the output with older engines).
	st, err := os.Stat(goldenOutput)
	if err != nil {
		t.Fatal(err)
	}
	outSize := st.Size()
	t.Logf("the output takes %d MiB", outSize>>20)

	mount := func(t *testing.T, size string) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "out")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		runCmd(t, "mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir)
		t.Cleanup(func() {
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v %s", dir, err, out)
			}
		})
		return dir
	}

	full := func(t *testing.T, size string) {
		dir := mount(t, size)
		r, ev := d.applyJSON(20*time.Minute, "-var", "output_dir="+dir)
		if r.code == 0 {
			t.Fatalf("apply succeeded on a %s folder", size)
		}
		if r.code != 1 {
			t.Errorf("exit %d, want 1", r.code)
		}
		if got := strings.Join(stepsStarted(ev), " "); got != "export/qcow2" {
			t.Errorf("apply ran %s, want only the export", got)
		}
		msg := r.stderr
		for _, want := range []string{"no space left on device", dir} {
			if !strings.Contains(msg, want) {
				t.Errorf("the error lacks %q:\n%s", want, msg)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("left in the full folder: %s", e.Name())
		}
		if out := strings.Fields(runCmd(t, "df", "--output=used", "-B1", dir)); out[len(out)-1] != "0" {
			t.Errorf("the full folder still uses space (open file deleted but held?): %s", out)
		}
		d.verifyClean("after the full disk")
		noQEMU(t, d.cache, 10*time.Second)
	}

	// 20 MiB: the export runs out of room at once; half the output: it runs out of room late.
	t.Run("20 MiB", func(t *testing.T) { full(t, "20m") })
	t.Run("half the output", func(t *testing.T) { full(t, fmt.Sprintf("%dm", outSize>>21)) })

	// A folder with room: only the export runs.
	big := filepath.Join(t.TempDir(), "big")
	if err := os.MkdirAll(big, 0o755); err != nil {
		t.Fatal(err)
	}
	r := d.run(5*time.Minute, "plan", "-json", "-var", "output_dir="+big)
	if r.code != 0 || !strings.Contains(r.stdout, `"to_run": 1,`) || !strings.Contains(r.stdout, `"cached": 6,`) {
		t.Errorf("plan for the big folder: %s\n%s", r, r.stdout)
	}
	r, ev := d.applyJSON(20*time.Minute, "-var", "output_dir="+big)
	if r.code != 0 {
		t.Fatalf("apply to a folder with room: %s\n%s", r, r.stderr)
	}
	if got := strings.Join(stepsStarted(ev), " "); got != "export/qcow2" {
		t.Errorf("apply ran %s, want only the export", got)
	}
	for _, e := range ev {
		if e.Type == "plan" && (e.Plan.ToRun != 1 || e.Plan.Cached != 6) {
			t.Errorf("apply's plan: %s", e.Plan.actions())
		}
	}
	checkOutputs(t, big)
	d.verifyClean("at the end")
}

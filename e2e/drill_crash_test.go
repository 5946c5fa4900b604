//go:build drills

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/steps/qemu/qemutest"
)

// crashMoment is a kind of moment at which the drill kills imgform: a trigger in the run and a random
// delay after it.
type crashMoment struct {
	name string
	// event fires on an apply -json event; nil means the trigger is a layer commit (see committing).
	event    func(ev crashEvent) bool
	min, max time.Duration
}

// crashMoments are in build order: each kill lands after what the kills before it let finish, so one
// cycle of them walks through a whole build. A cycle starts from an empty cache.
var crashMoments = []crashMoment{
	{name: "mid-download", event: started("/fetch"), min: 200 * time.Millisecond, max: 3 * time.Second},
	{name: "mid-boot", event: started("/boot"), min: 3 * time.Second, max: 60 * time.Second},
	{name: "mid-layer-commit", min: 0, max: 40 * time.Millisecond},
	{name: "mid-provisioner", event: started("/provision/"), min: 0, max: 8 * time.Second},
	{name: "mid-cleanup", event: started("/cleanup"), min: 0, max: 8 * time.Second},
	{name: "mid-export", event: started("/export/"), min: 0, max: 4 * time.Second},
}

func started(suffix string) func(crashEvent) bool {
	return func(ev crashEvent) bool { return ev.Type == "step_started" && strings.Contains(ev.Step, suffix) }
}

type crashEvent struct {
	Type   string `json:"type"`
	Step   string `json:"step"`
	Status string `json:"status"`
}

// TestDrillKill9 kills imgform (only imgform: it must take its QEMU down itself) with SIGKILL at random
// moments of real builds and checks after each kill that the cache verifies, no QEMU is left, no output is
// half-written and the next plan reuses every step that had finished; then it lets the build finish.
// IMGFORM_DRILL_KILLS sets the number of kills (20), IMGFORM_DRILL_SEED the random seed (logged).
func TestDrillKill9(t *testing.T) {
	kills := envInt(t, "IMGFORM_DRILL_KILLS", 20)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("IMGFORM_DRILL_SEED"); s != "" {
		seed = uint64(envInt(t, "IMGFORM_DRILL_SEED", 0))
	}
	t.Logf("seed %d (IMGFORM_DRILL_SEED=%d repeats the delays)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	d := newCrashDrill(t)
	done, cycles := 0, 0
	for done < kills {
		cycles++
		d.reset(cycles)
		// Every step any run of this cycle finished must stay reused until the build is complete.
		finishedInCycle := map[string]bool{}
		for _, m := range crashMoments {
			if done == kills {
				break
			}
			delay := m.min + time.Duration(rng.Int64N(int64(m.max-m.min)+1))
			killed, finished := d.applyAndKill(m, delay)
			if !killed {
				t.Logf("cycle %d: %s: the apply ended before the kill", cycles, m.name)
				continue
			}
			done++
			t.Logf("kill %d/%d (cycle %d): %s, %s after the trigger; steps finished before: %v", done, kills, cycles, m.name, delay.Round(time.Millisecond), finished)
			for _, id := range finished {
				finishedInCycle[id] = true
			}
			d.checkAfterKill(finishedInCycle)
		}
		d.finish()
	}
}

// crashDrill is one configuration with its cache, served source and imgform binary.
type crashDrill struct {
	t     *testing.T
	bin   string
	dir   string // configuration folder
	cache string
	vars  []string
	// The last run's stderr, for failures.
	stderr bytes.Buffer
}

func newCrashDrill(t *testing.T) *crashDrill {
	if err := qemutest.RequireQEMU(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	img, err := qemutest.TestImage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	root, err := qemutest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	d := &crashDrill{t: t, bin: filepath.Join(tmp, "imgform"), dir: filepath.Join(tmp, "config")}
	build := exec.Command("go", "build", "-o", d.bin, "./cmd/imgform")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "examples", "debian-12-base"), d.dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	_ = os.RemoveAll(filepath.Join(d.dir, "dist"))
	// No package upgrade or extra packages: the drill is about imgform, not apt, and boots many times.
	hcl := filepath.Join(d.dir, "debian-12-base.imgform.hcl")
	b, err := os.ReadFile(hcl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hcl, bytes.Replace(b, []byte("package_upgrade = true"), []byte("package_upgrade = false"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := serveThrottled(t, img)
	d.vars = []string{"-var", "source_url=" + srv + "/disk.qcow2", "-var", "source_checksum=file:" + srv + "/SHA256SUMS",
		"-var", "packages=[]", "-var", "zstd_level=3"}
	return d
}

// serveThrottled serves the source image at about 40 MB/s, so that a download lasts long enough to be
// interrupted, and its sums file.
func serveThrottled(t *testing.T, img string) string {
	sums, err := os.ReadFile(img + ".SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	sum := strings.Fields(string(sums))[0]
	mux := http.NewServeMux()
	mux.HandleFunc("/SHA256SUMS", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s  disk.qcow2\n", sum)
	})
	mux.HandleFunc("/disk.qcow2", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(img)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		st, _ := f.Stat()
		w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
		buf := make([]byte, 1<<20)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				time.Sleep(25 * time.Millisecond)
			}
			if err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// reset starts a cycle from an empty cache and no outputs.
func (d *crashDrill) reset(cycle int) {
	d.cache = filepath.Join(d.t.TempDir(), fmt.Sprintf("cache-%d", cycle))
	if err := os.RemoveAll(filepath.Join(d.dir, "dist")); err != nil {
		d.t.Fatal(err)
	}
}

// command runs imgform on the drill's configuration: args, then the variables and the folder.
func (d *crashDrill) command(ctx context.Context, args ...string) *exec.Cmd {
	return d.imgform(ctx, append(append(args, d.vars...), d.dir)...)
}

// imgform runs imgform on the drill's cache.
func (d *crashDrill) imgform(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = append(os.Environ(), "IMGFORM_CACHE_DIR="+d.cache, "IMGFORM_ACCELERATOR=tcg", "NO_COLOR=1")
	return cmd
}

// applyAndKill runs apply -json and SIGKILLs it delay after m's trigger. It returns whether the kill
// happened (the apply may end first) and the steps that had finished (done or cached) before it.
func (d *crashDrill) applyAndKill(m crashMoment, delay time.Duration) (killed bool, finished []string) {
	t := d.t
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	cmd := d.command(ctx, "apply", "-json")
	d.stderr.Reset()
	cmd.Stderr = &d.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	trigger := make(chan struct{})
	var fired bool
	fire := func() {
		if !fired {
			fired = true
			close(trigger)
		}
	}
	stopWatch := make(chan struct{})
	if m.event == nil {
		go watchLayerCommit(cmd.Process.Pid, fire, stopWatch)
	}
	go func() {
		select {
		case <-trigger:
		case <-stopWatch:
			return
		}
		time.Sleep(delay)
		_ = cmd.Process.Signal(syscall.SIGKILL)
	}()

	// Every event read was printed before imgform died, so a step reported finished had finished.
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	eventsDone := make(chan []string, 1)
	go func() {
		var list []string
		for sc.Scan() {
			var ev crashEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			if ev.Type == "step_finished" && (ev.Status == "done" || ev.Status == "cached") {
				list = append(list, ev.Step)
			}
			if m.event != nil && m.event(ev) {
				fire()
			}
		}
		eventsDone <- list
	}()
	waitErr := cmd.Wait()
	close(stopWatch)
	finished = <-eventsDone
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		killed = true
	} else if waitErr != nil {
		// Not killed: the apply ended by itself, and must have succeeded.
		t.Fatalf("apply failed on its own: %v\n%s", waitErr, d.stderr.String())
	}
	return killed, finished
}

// watchLayerCommit fires when imgform itself has a layer of a write in progress open: that is the hashing
// of a commit (QEMU is another process, and qemu-img create -u does not open the layer below).
func watchLayerCommit(pid int, fire func(), stop <-chan struct{}) {
	re := regexp.MustCompile(`/objects/[0-9a-f]{2}/\.tmp-[^/]+/data/disk\.qcow2$`)
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	for {
		select {
		case <-stop:
			return
		default:
		}
		entries, _ := os.ReadDir(fdDir)
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(fdDir, e.Name())); err == nil && re.MatchString(target) {
				fire()
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkAfterKill checks what a kill may leave: no QEMU, a cache that verifies, no half-written output,
// and a plan that reuses every finished step.
func (d *crashDrill) checkAfterKill(finished map[string]bool) {
	t := d.t
	t.Helper()
	waitNoQEMU(t, d.cache, 20*time.Second)
	d.verifyCache()
	d.checkOutputs(true)
	plan := d.planActions()
	for id := range finished {
		if plan[id] != "cached" {
			t.Errorf("step %s had finished before the kill, but the next plan says %q", id, plan[id])
		}
	}
}

// finish applies until the build is complete and checks the result and that nothing is left to do.
func (d *crashDrill) finish() {
	t := d.t
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	if out, err := d.command(ctx, "apply").CombinedOutput(); err != nil {
		t.Fatalf("apply after the kills: %v\n%s", err, out)
	}
	waitNoQEMU(t, d.cache, 20*time.Second)
	d.verifyCache()
	d.checkOutputs(false)
	if _, err := os.Stat(filepath.Join(d.dir, "dist", "debian-12-base-2026.11.qcow2.zst")); err != nil {
		t.Fatal(err)
	}
	if cmd := d.command(ctx, "plan", "-detailed-exitcode"); cmd.Run() != nil {
		t.Errorf("plan after the finished build wants to run something (or failed)")
	}
	// The sweep of the last apply left no temp or work folder of the killed ones.
	for _, pattern := range []string{"objects/*/.tmp-*", "work/*"} {
		if left, _ := filepath.Glob(filepath.Join(d.cache, pattern)); len(left) > 0 {
			t.Errorf("left in the cache after a complete apply: %v", left)
		}
	}
}

func (d *crashDrill) verifyCache() {
	t := d.t
	t.Helper()
	out, err := d.imgform(context.Background(), "cache", "verify").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " 0 bad") {
		t.Fatalf("cache verify after a kill: %v\n%s", err, out)
	}
}

// checkOutputs: the output folder holds only whole files: the image decompresses, and SHA256SUMS, when
// written, matches it. Right after a kill the export's hidden temp file (".<name>.tmp-*", never under the
// output's name) may be there; the next apply removes it, so once a build is complete none is left.
func (d *crashDrill) checkOutputs(afterKill bool) {
	t := d.t
	t.Helper()
	dist := filepath.Join(d.dir, "dist")
	entries, err := os.ReadDir(dist)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"debian-12-base-2026.11.qcow2.zst": true, "SHA256SUMS": true, "debian-12-base.manifest.json": true}
	for _, e := range entries {
		if afterKill && strings.HasPrefix(e.Name(), ".debian-12-base-2026.11.qcow2.zst.tmp-") {
			continue
		}
		if !known[e.Name()] {
			t.Errorf("unexpected file in the output folder after a kill: %s", e.Name())
		}
	}
	img := filepath.Join(dist, "debian-12-base-2026.11.qcow2.zst")
	if _, err := os.Stat(img); err != nil {
		return
	}
	if out, err := exec.Command("zstd", "-t", "-q", img).CombinedOutput(); err != nil {
		t.Errorf("the output is not a whole zstd file: %v %s", err, out)
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		return // killed between the output and its sums: the next apply writes them
	}
	want := ""
	for _, line := range strings.Split(string(sums), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.TrimPrefix(f[1], "*") == filepath.Base(img) {
			want = f[0]
		}
	}
	if got := fileSHA256(t, img); got != want {
		t.Errorf("SHA256SUMS says %s for the output, the file is %s", want, got)
	}
}

// planActions returns each step's action in plan -json.
func (d *crashDrill) planActions() map[string]string {
	t := d.t
	t.Helper()
	out, err := d.command(context.Background(), "plan", "-json").Output()
	if err != nil {
		t.Fatalf("plan after a kill: %v\n%s", err, out)
	}
	var p struct {
		Images []struct {
			Steps []struct{ ID, Action string }
		}
	}
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("plan -json: %v", err)
	}
	actions := map[string]string{}
	for _, img := range p.Images {
		for _, s := range img.Steps {
			actions[s.ID] = s.Action
		}
	}
	return actions
}

// waitNoQEMU fails when a QEMU of this cache still runs after grace: imgform's QEMU dies with it
// (Pdeathsig), which takes a moment.
func waitNoQEMU(t *testing.T, cache string, grace time.Duration) {
	t.Helper()
	deadline := time.Now().Add(grace)
	for {
		var left []string
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err == nil && bytes.Contains(b, []byte("qemu-system")) && bytes.Contains(b, []byte(cache)) {
				left = append(left, filepath.Base(filepath.Dir(p)))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU still running %s after imgform was killed: pids %v", grace, left)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func fileSHA256(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

//go:build drills

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Drill 1: kill -9 of imgform at 20 moments of a full build, chosen at random (seeded; the seed is logged
// and IMGFORM_DRILL_SEED replays it): mid-download (from a throttled loopback server), right after a
// step_finished, mid-boot, mid-provisioner, mid-cleanup and mid-export. Only imgform gets SIGKILL, not its
// process group: it must take QEMU down itself. After each kill: cache verify finds nothing wrong, no QEMU
// (or qemu-img) of the cache is left after a few seconds, the output folder holds only complete outputs
// that match SHA256SUMS and no temp file, and plan -json shows every step that had finished as cached.
// Then the next apply resumes, until the build completes.
//
// IMGFORM_DRILL_KILLS changes the number of kills. The drill stops killing when the test's deadline is
// less than 20 minutes away, so that the build can still complete; the log says how many kills it did.
func TestDrill1KillNine(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("IMGFORM_DRILL_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = v
	}
	kills := 20
	if s := os.Getenv("IMGFORM_DRILL_KILLS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		kills = v
	}
	t.Logf("seed %d (IMGFORM_DRILL_SEED=%d replays it), %d kills", seed, seed, kills)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	d := newDrill(t, drillConfigOptions{})
	// The source comes from a loopback server at 32 MiB/s, so a download takes a few seconds.
	img := d.img
	sums, err := os.ReadFile(img + ".SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/images/SHA256SUMS":
			_, _ = w.Write(sums)
		case "/images/" + filepath.Base(img):
			serveSlowly(w, r, img, 32<<20)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	vars := fmt.Sprintf("source_url      = %q\nsource_checksum = %q\n", srv.URL+"/images/"+filepath.Base(img), "file:"+srv.URL+"/images/SHA256SUMS")
	if err := os.WriteFile(filepath.Join(d.dir, "drill.auto.imgvars.hcl"), []byte(vars), 0o644); err != nil {
		t.Fatal(err)
	}

	moments := pickMoments(rng, kills)
	for i, m := range moments {
		t.Logf("moment %2d: %s", i+1, m)
	}
	reserve := 20 * time.Minute
	var done, missed int
	for i, m := range moments {
		if dl, ok := t.Deadline(); ok && time.Until(dl) < reserve {
			t.Logf("DRILL 1: stopping after %d kills: less than %s left before the test deadline; %d moments not tried", done, reserve, len(moments)-i)
			break
		}
		k := d.applyAndKill(m)
		if !k.killed {
			missed++
			t.Logf("moment %d (%s): not reached; apply %s", i+1, m, k.r)
			if k.r.code != 0 {
				t.Errorf("moment %d: apply failed without being killed: %s\n%s", i+1, k.r, k.r.stderr)
			}
			if k.r.code == 0 && m.stage == stageExport {
				_ = os.RemoveAll(d.outDir()) // so the next export moment has an export to interrupt
			}
			continue
		}
		done++
		t.Logf("kill %d (moment %d, %s): killed imgform %s after %s, during %s; steps done before: %v",
			done, i+1, m, k.r.args[0], k.r.elapsed.Round(100*time.Millisecond), k.during, k.finished)
		d.checkAfterKill(t, fmt.Sprintf("kill %d (%s)", done, m), k)
	}
	t.Logf("DRILL 1: %d kills, %d moments not reached", done, missed)

	// The build completes.
	r, ev := d.applyJSON(60 * time.Minute)
	if r.code != 0 {
		t.Fatalf("the apply after the kills failed: %s\n%s", r, r.stderr)
	}
	t.Logf("the final apply ran %v", stepsStarted(ev))
	checkOutputs(t, d.outDir())
	noQEMU(t, d.cache, 10*time.Second)
	d.verifyClean("after the build completed")
	if p := d.plan(); p.ToRun != 0 {
		t.Errorf("after the build: plan would run %s", p.actions())
	}
	// What interrupted writes left in the cache; gc removes them.
	work, _ := filepath.Glob(filepath.Join(d.cache, "work", "*"))
	t.Logf("left in the cache by the kills: %d interrupted object writes %v, %d VM work folders %v", len(d.tempLeftovers()), d.tempLeftovers(), len(work), work)
	r = d.run(10*time.Minute, "cache", "gc", "-older-than", "87600h")
	if r.code != 0 {
		t.Errorf("cache gc: %s\n%s", r, r.stderr)
	}
	if left := d.tempLeftovers(); len(left) > 0 {
		t.Errorf("cache gc left interrupted writes: %v", left)
	}
	if work, _ := filepath.Glob(filepath.Join(d.cache, "work", "*")); len(work) > 0 {
		var size int64
		for _, w := range work {
			_ = filepath.Walk(w, func(_ string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() {
					size += fi.Size()
				}
				return nil
			})
		}
		t.Errorf("VM work folders of killed applies are left in the cache after gc (%d MiB): %v", size>>20, work)
	}
	d.verifyClean("after gc")
}

// serveSlowly serves a file at about rate bytes per second.
func serveSlowly(w http.ResponseWriter, r *http.Request, path string, rate int) {
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.Method == http.MethodHead {
		return
	}
	const chunk = 256 << 10
	tick := time.Duration(float64(time.Second) * chunk / float64(rate))
	buf := make([]byte, chunk)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			time.Sleep(tick)
		}
		if err != nil {
			return
		}
	}
}

// Stages of a build, in order.
const (
	stageDownload = iota
	stageFinishedEarly
	stageBoot
	stageProvision
	stageCleanup
	stageFinishedDisk
	stageExport
)

// moment is when to kill imgform.
type moment struct {
	stage int
	desc  string
	// trigger returns true when the event just seen is the moment; it may instead arm a timer with
	// after (the moment is then that long after the event).
	trigger func(e event) (now bool, after time.Duration)
}

func (m moment) String() string { return m.desc }

// pickMoments picks n moments in build order (a killed step is started again, so several moments can
// interrupt the same stage one after the other).
func pickMoments(rng *rand.Rand, n int) []moment {
	// How many of each kind, scaled from 20: 3 downloads, 2 early step_finished, 4 boots,
	// 3 provisioners, 1 cleanup, 3 step_finished of disk steps, 4 exports.
	weights := []struct{ stage, n int }{
		{stageDownload, 3}, {stageFinishedEarly, 2}, {stageBoot, 4}, {stageProvision, 3},
		{stageCleanup, 1}, {stageFinishedDisk, 3}, {stageExport, 4},
	}
	var stages []int
	for _, w := range weights {
		for range w.n {
			stages = append(stages, w.stage)
		}
	}
	for len(stages) < n {
		stages = append(stages, weights[rng.IntN(len(weights))].stage)
	}
	rng.Shuffle(len(stages), func(i, j int) { stages[i], stages[j] = stages[j], stages[i] })
	stages = stages[:n]
	sort.Ints(stages)

	var out []moment
	early := []string{"seed", "fetch"} // seed finishes first: it takes no time
	disk := []string{"boot", "provision/networkd", "provision/motd", "cleanup"}
	var diskPicks []string
	nDisk := 0
	for _, s := range stages {
		if s == stageFinishedDisk {
			nDisk++
		}
	}
	if nDisk > 0 {
		perm := rng.Perm(len(disk))[:min(nDisk, len(disk))]
		sort.Ints(perm)
		for _, i := range perm {
			diskPicks = append(diskPicks, disk[i])
		}
	}
	nEarly := 0
	for _, s := range stages {
		switch s {
		case stageDownload:
			frac := 0.05 + 0.9*rng.Float64()
			out = append(out, moment{stage: s, desc: fmt.Sprintf("mid-download at %.0f%%", 100*frac),
				trigger: func(e event) (bool, time.Duration) {
					return e.Type == "step_progress" && e.Phase == "download" && e.Total > 0 && float64(e.Done) >= frac*float64(e.Total), 0
				}})
		case stageFinishedEarly:
			step := early[min(nEarly, len(early)-1)]
			nEarly++
			out = append(out, finishedMoment(s, step))
		case stageBoot:
			delay := time.Duration(3+rng.IntN(177)) * time.Second
			out = append(out, moment{stage: s, desc: fmt.Sprintf("mid-boot, %s after it started", delay),
				trigger: func(e event) (bool, time.Duration) {
					return false, startedAfter(e, "boot", delay)
				}})
		case stageProvision:
			name := []string{"networkd", "motd"}[rng.IntN(2)]
			delay := time.Duration(rng.IntN(3000)) * time.Millisecond
			out = append(out, moment{stage: s, desc: fmt.Sprintf("mid-provisioner %s, %s after it started", name, delay),
				trigger: func(e event) (bool, time.Duration) {
					return false, startedAfter(e, "provision/"+name, delay)
				}})
		case stageCleanup:
			delay := time.Duration(rng.IntN(15000)) * time.Millisecond
			out = append(out, moment{stage: s, desc: fmt.Sprintf("mid-cleanup, %s after it started", delay),
				trigger: func(e event) (bool, time.Duration) {
					return false, startedAfter(e, "cleanup", delay)
				}})
		case stageFinishedDisk:
			step := "cleanup"
			if len(diskPicks) > 0 {
				step, diskPicks = diskPicks[0], diskPicks[1:]
			}
			out = append(out, finishedMoment(s, step))
		case stageExport:
			switch rng.IntN(3) {
			case 0:
				delay := time.Duration(rng.IntN(2000)) * time.Millisecond
				out = append(out, moment{stage: s, desc: fmt.Sprintf("export, %s after it started", delay),
					trigger: func(e event) (bool, time.Duration) {
						return false, startedAfter(e, "export/qcow2", delay)
					}})
			default:
				phase := []string{"flatten", "compress"}[rng.IntN(2)]
				frac := 0.05 + 0.9*rng.Float64()
				out = append(out, moment{stage: s, desc: fmt.Sprintf("mid-export, %s at %.0f%%", phase, 100*frac),
					trigger: func(e event) (bool, time.Duration) {
						return e.Type == "step_progress" && e.Phase == phase && e.Total > 0 && float64(e.Done) >= frac*float64(e.Total), 0
					}})
			}
		}
	}
	return out
}

func finishedMoment(stage int, step string) moment {
	return moment{stage: stage, desc: "right after step_finished " + step,
		trigger: func(e event) (bool, time.Duration) {
			return e.Type == "step_finished" && e.Status == "done" && e.Step == drillImageName+"/"+step, 0
		}}
}

// startedAfter returns delay when e starts step (0 means: not this event; a zero delay is 1ns).
func startedAfter(e event, step string, delay time.Duration) time.Duration {
	if e.Type == "step_started" && e.Step == drillImageName+"/"+step {
		return max(delay, time.Nanosecond)
	}
	return 0
}

// killed is what applyAndKill saw.
type killed struct {
	r        result
	killed   bool
	during   string   // the steps running when imgform was killed
	finished []string // steps with step_finished done before the kill
	events   []event
}

// applyAndKill runs apply -json and sends SIGKILL to imgform (only) at the moment.
func (d *drill) applyAndKill(m moment) killed {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	args := []string{"apply", "-json"}
	cmd := d.command(ctx, args)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		d.t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	var mu sync.Mutex
	var k killed
	running := map[string]bool{}
	kill := func() {
		mu.Lock()
		defer mu.Unlock()
		if k.killed {
			return
		}
		k.killed = true
		var during []string
		for s := range running {
			during = append(during, strings.TrimPrefix(s, drillImageName+"/"))
		}
		sort.Strings(during)
		k.during = strings.Join(during, ", ")
		if k.during == "" {
			k.during = "(between steps)"
		}
		_ = cmd.Process.Kill() // SIGKILL to imgform's PID only
	}
	var out strings.Builder
	sc := bufio.NewScanner(io.TeeReader(stdout, &out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var timer *time.Timer
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		mu.Lock()
		switch e.Type {
		case "step_started":
			running[e.Step] = true
		case "step_finished":
			delete(running, e.Step)
		}
		mu.Unlock()
		now, after := m.trigger(e)
		switch {
		case now:
			kill()
		case after > 0 && timer == nil:
			timer = time.AfterFunc(after, kill)
		}
	}
	if timer != nil {
		timer.Stop()
	}
	err = cmd.Wait()
	k.r = result{args: args, stdout: out.String(), stderr: stderr.String(), elapsed: time.Since(start), code: exitCode(err)}
	d.record(k.r)
	k.events = parseEvents(k.r.stdout)
	for _, e := range k.events {
		if e.Type == "step_finished" && e.Status == "done" {
			k.finished = append(k.finished, strings.TrimPrefix(e.Step, drillImageName+"/"))
		}
	}
	if k.killed && k.r.code != -1 {
		// The process ended on its own before the signal landed.
		d.t.Logf("imgform exited %d before the kill landed", k.r.code)
		k.killed = false
	}
	return k
}

// checkAfterKill checks the cache, the processes and the output folder after imgform was killed.
func (d *drill) checkAfterKill(t *testing.T, what string, k killed) {
	t.Helper()
	// QEMU gets SIGKILL from the kernel when imgform dies (Pdeathsig); give it a few seconds.
	before := t.Failed()
	noQEMU(t, d.cache, 10*time.Second)
	noProcess(t, "qemu-img", []string{d.cache, d.dir}, 10*time.Second)
	r := d.verify(false)
	if r.code != 0 || !strings.Contains(r.stdout, " 0 bad") {
		t.Errorf("%s: cache verify: %s\n%s%s", what, r, r.stdout, r.stderr)
	}
	// Only complete outputs matching SHA256SUMS, and no temp file.
	entries, _ := os.ReadDir(d.outDir())
	sums := map[string]string{}
	if b, err := os.ReadFile(filepath.Join(d.outDir(), "SHA256SUMS")); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if sum, name, ok := strings.Cut(line, "  "); ok {
				sums[name] = sum
			}
		}
	}
	for _, e := range entries {
		n := e.Name()
		switch {
		case n == "SHA256SUMS" || n == drillImageName+".manifest.json":
		case strings.HasPrefix(n, "."):
			t.Errorf("%s: temp file left in the output folder: %s", what, n)
		default:
			sha, err := sha256File(filepath.Join(d.outDir(), n))
			switch {
			case err != nil:
				t.Errorf("%s: %v", what, err)
			case sums[n] == "":
				t.Errorf("%s: the output %s is not listed in SHA256SUMS (sha256 %s)", what, n, sha)
			case sums[n] != sha:
				t.Errorf("%s: the output %s does not match SHA256SUMS: %s, listed %s", what, n, sha, sums[n])
			}
		}
	}
	// Every step that had finished is cached.
	p := d.plan()
	for _, s := range k.finished {
		if a := p.action(drillImageName + "/" + s); a != "cached" {
			t.Errorf("%s: step %s finished before the kill, but the next plan says %s", what, s, a)
		}
	}
	if !before && t.Failed() {
		t.Logf("%s: the checks above failed; apply's stderr:\n%s", what, lastLines(k.r.stderr, 20))
	}
}

// noProcess checks that no process named name mentions any of dirs on its command line.
func noProcess(t *testing.T, name string, dirs []string, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var left []string
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if _, err := strconv.Atoi(e.Name()); err != nil {
				continue
			}
			b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil || len(b) == 0 {
				continue
			}
			args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
			if filepath.Base(args[0]) != name {
				continue
			}
			cl := strings.Join(args, " ")
			for _, dir := range dirs {
				if strings.Contains(cl, dir) {
					left = append(left, e.Name()+": "+cl)
					break
				}
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s still running %s after imgform was killed: %v", name, wait, left)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

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
	"os"
	"path/filepath"
	"regexp"
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
	d.serveSource(t, func(w http.ResponseWriter, r *http.Request, path string) { serveSlowly(w, r, path, 32<<20) })

	moments := pickMoments(rng, kills)
	for i, m := range moments {
		t.Logf("moment %2d: %s", i+1, m)
	}
	// A moment is reachable while the step it interrupts still has to run. One whose step is already
	// cached (a timed kill landed later than meant and the step finished) waits for the next cycle, which
	// starts from an empty cache once the current build is complete.
	reserve := 20 * time.Minute
	pending := moments
	done, cycle := 0, 1
	for len(pending) > 0 {
		var deferred []moment
		for i, m := range pending {
			if dl, ok := t.Deadline(); ok && time.Until(dl) < reserve {
				t.Logf("DRILL 1: stopping after %d kills: less than %s left before the test deadline; %d moments not tried",
					done, reserve, len(pending)-i+len(deferred))
				pending, deferred = nil, nil
				break
			}
			if a := d.plan().action(drillImageName + "/" + m.target); a != "run" {
				deferred = append(deferred, m)
				continue
			}
			k := d.applyAndKill(m)
			if !k.killed {
				t.Logf("cycle %d, %s: not reached; %s", cycle, m, k.r)
				if k.r.code != 0 {
					t.Errorf("%s: apply failed without being killed: %s\n%s", m, k.r, k.r.stderr)
				}
				deferred = append(deferred, m)
				continue
			}
			done++
			t.Logf("kill %d (cycle %d, %s): imgform killed after %s, during %s; steps done before: %v",
				done, cycle, m, k.r.elapsed.Round(100*time.Millisecond), k.during, k.finished)
			d.checkAfterKill(t, fmt.Sprintf("kill %d (%s)", done, m), k)
		}
		d.completeBuild(t)
		pending = deferred
		if len(pending) > 0 {
			cycle++
			t.Logf("cycle %d: %d moments from an empty cache", cycle, len(pending))
			if err := os.RemoveAll(d.cache); err != nil {
				t.Fatal(err)
			}
			_ = os.RemoveAll(d.outDir())
		}
	}
	t.Logf("DRILL 1: %d kills in %d cycle(s)", done, cycle)
}

// completeBuild lets the build finish after the kills and checks the result and the cache.
func (d *drill) completeBuild(t *testing.T) {
	t.Helper()
	r, ev := d.applyJSON(60 * time.Minute)
	if r.code != 0 {
		t.Fatalf("the apply after the kills failed: %s\n%s", r, r.stderr)
	}
	t.Logf("the apply after the kills ran %v", stepsStarted(ev))
	checkOutputs(t, d.outDir())
	noQEMU(t, d.cache, 10*time.Second)
	d.verifyClean("after the build completed")
	if p := d.plan(); p.ToRun != 0 {
		t.Errorf("after the build: plan would run %s", p.actions())
	}
	// What the kills left in the cache (apply sweeps dead writers' folders when it starts; gc too).
	work, _ := filepath.Glob(filepath.Join(d.cache, "work", "*"))
	t.Logf("left in the cache: %d interrupted object writes %v, %d work folders %v", len(d.tempLeftovers()), d.tempLeftovers(), len(work), work)
	r = d.run(10*time.Minute, "cache", "gc", "-older-than", "87600h")
	if r.code != 0 {
		t.Errorf("cache gc: %s\n%s", r, r.stderr)
	}
	if left := d.tempLeftovers(); len(left) > 0 {
		t.Errorf("cache gc left interrupted writes: %v", left)
	}
	if work, _ := filepath.Glob(filepath.Join(d.cache, "work", "*")); len(work) > 0 {
		t.Errorf("work folders of killed applies are left in the cache after gc: %v", work)
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

// moment is when to kill imgform.
type moment struct {
	rank   int    // place in the build: moments run in this order
	target string // the step the moment interrupts or follows; the moment needs it to run
	desc   string
	// afterBoot starts the delay of a timed trigger only once the guest is up.
	afterBoot bool
	// inCommit kills, once the trigger fired, as soon as imgform has a layer of an uncommitted object
	// open: it is hashing that layer to commit it (watchLayerCommit).
	inCommit bool
	// trigger returns true when the event just seen is the moment; it may instead arm a timer with
	// after (the moment is then that long after the event).
	trigger func(e event) (now bool, after time.Duration)
}

func (m moment) String() string { return m.desc }

// The steps of the drill configuration in build order, for ranks.
var drillSteps = []string{"seed", "fetch", "boot", "provision/motd", "cleanup", "export/qcow2"}

func stepRank(step string) int {
	for i, s := range drillSteps {
		if s == step {
			return 10 * i
		}
	}
	panic(step)
}

// pickMoments picks n moments (3 mid-download, 2 right after the step_finished of seed and fetch, 3
// mid-boot, 1 mid-layer commit, 3 mid-provisioner, 1 mid-cleanup, 3 right after the step_finished of a disk step (each disk step), 4 mid-export
// for 20; more are drawn at random among these kinds) and sorts them in build order. A killed step runs
// again on the next apply, so several moments can interrupt the same step one after the other.
func pickMoments(rng *rand.Rand, n int) []moment {
	kinds := []struct {
		n    int
		make func() moment
	}{
		{3, func() moment {
			frac := 0.05 + 0.9*rng.Float64()
			return moment{rank: stepRank("fetch") - 5, target: "fetch", desc: fmt.Sprintf("mid-download at %.0f%%", 100*frac),
				trigger: func(e event) (bool, time.Duration) {
					return e.Type == "step_progress" && e.Phase == "download" && e.Total > 0 && float64(e.Done) >= frac*float64(e.Total), 0
				}}
		}},
		{3, func() moment {
			// Up to 100 s: a first boot of the drill configuration takes 1.5 to 2 minutes on a quiet
			// machine (a later delay lands in the cleanup), and longer on a busy one.
			delay := time.Duration(3+rng.IntN(97)) * time.Second
			return timedMoment("boot", delay, "mid-boot")
		}},
		{1, func() moment {
			step := []string{"boot", "provision/motd", "cleanup"}[rng.IntN(3)]
			return moment{rank: stepRank(step) - 2, target: step, desc: "mid-layer commit of " + step, inCommit: true,
				trigger: func(e event) (bool, time.Duration) {
					return e.Type == "step_started" && e.Step == drillImageName+"/"+step, 0
				}}
		}},
		{3, func() moment {
			return timedMoment("provision/motd", time.Duration(rng.IntN(3000))*time.Millisecond, "mid-provisioner motd")
		}},
		{1, func() moment {
			return timedMoment("cleanup", time.Duration(rng.IntN(15000))*time.Millisecond, "mid-cleanup")
		}},
		{4, func() moment {
			if rng.IntN(3) == 0 {
				return timedMoment("export/qcow2", time.Duration(rng.IntN(2000))*time.Millisecond, "export")
			}
			phase := []string{"flatten", "compress"}[rng.IntN(2)]
			frac := 0.05 + 0.9*rng.Float64()
			return moment{rank: stepRank("export/qcow2") - 5, target: "export/qcow2", desc: fmt.Sprintf("mid-export, %s at %.0f%%", phase, 100*frac),
				trigger: func(e event) (bool, time.Duration) {
					return e.Type == "step_progress" && e.Phase == phase && e.Total > 0 && float64(e.Done) >= frac*float64(e.Total), 0
				}}
		}},
	}
	// Right after a step_finished: seed and fetch, then distinct disk steps (a step finishes once).
	var out []moment
	finished := []string{"seed", "fetch"}
	for _, i := range rng.Perm(3) {
		finished = append(finished, []string{"boot", "provision/motd", "cleanup"}[i])
	}
	for _, step := range finished {
		out = append(out, finishedMoment(step))
	}
	for _, k := range kinds {
		for range k.n {
			out = append(out, k.make())
		}
	}
	for len(out) < n {
		k := kinds[rng.IntN(len(kinds))]
		out = append(out, k.make())
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	out = out[:n]
	sort.SliceStable(out, func(i, j int) bool { return out[i].rank < out[j].rank })
	return out
}

// timedMoment is delay after step started. For a provisioner or the cleanup the delay counts from when
// the guest is up (see applyAndKill): a session that resumes from a cached layer starts its first step
// with the boot.
func timedMoment(step string, delay time.Duration, what string) moment {
	desc := fmt.Sprintf("%s, %s after the step started", what, delay)
	afterBoot := step != "boot" && step != "export/qcow2"
	if afterBoot {
		desc = fmt.Sprintf("%s, %s after the step started in the running guest", what, delay)
	}
	return moment{rank: stepRank(step) - 5, target: step, desc: desc, afterBoot: afterBoot,
		trigger: func(e event) (bool, time.Duration) {
			if e.Type == "step_started" && e.Step == drillImageName+"/"+step {
				return false, max(delay, time.Nanosecond)
			}
			return false, 0
		}}
}

// guestUp waits until the VM of the cache's running session has finished booting: cloud-init's final
// message is on its serial console (a session that goes on from a step it ran has it already).
func guestUp(ctx context.Context, cache string) {
	for ctx.Err() == nil {
		logs, _ := filepath.Glob(filepath.Join(cache, "work", "*", "state", "serial.log"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil && strings.Contains(string(b), "Cloud-init v.") && strings.Contains(string(b), " finished at ") {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// finishedMoment is right after the step_finished (done) event of step.
func finishedMoment(step string) moment {
	return moment{rank: stepRank(step), target: step, desc: "right after step_finished " + step,
		trigger: func(e event) (bool, time.Duration) {
			return e.Type == "step_finished" && e.Status == "done" && e.Step == drillImageName+"/"+step, 0
		}}
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
	exited := false // imgform closed its stdout: it has exited, no more kills
	running := map[string]bool{}
	kill := func() {
		mu.Lock()
		defer mu.Unlock()
		if k.killed || exited {
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
	var watchStop chan struct{}
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
		case now && m.inCommit && watchStop == nil:
			watchStop = make(chan struct{})
			go watchLayerCommit(cmd.Process.Pid, kill, watchStop)
		case now && !m.inCommit:
			kill()
		case after > 0 && timer == nil && m.afterBoot:
			timer = time.AfterFunc(0, func() {
				guestUp(ctx, d.cache)
				select {
				case <-ctx.Done():
				case <-time.After(after):
					kill()
				}
			})
		case after > 0 && timer == nil:
			timer = time.AfterFunc(after, kill)
		}
	}
	mu.Lock()
	exited = true
	mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	if watchStop != nil {
		close(watchStop)
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

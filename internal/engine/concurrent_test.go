package engine

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/kinds"
	"gitlab.com/imgform/imgform/internal/state"
)

// TestMain lets a test re-execute this binary as a second imgform process running one apply.
func TestMain(m *testing.M) {
	if dir := os.Getenv("ENGINE_TEST_APPLY_DIR"); dir != "" {
		os.Exit(helperApply(dir, os.Getenv("ENGINE_TEST_APPLY_STORE")))
	}
	os.Exit(m.Run())
}

func helperApply(dir, storeDir string) int {
	st, err := state.Open(storeDir)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	cfg, diags := config.Load(dir, config.LoadOptions{Env: []string{}})
	if diags.HasErrors() {
		fmt.Println("error:", diags.Error())
		return 1
	}
	rec := newRecorder()
	g := &layerGuest{}
	e := &Engine{Store: st, Kinds: kinds.All(), Machines: g, Hooks: rec}
	res, err := e.Apply(context.Background(), cfg)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Printf("ran %d\n", res.Ran)
	return 0
}

// Two apply processes of one configuration on one cache: both succeed with the same output, every step is
// built once, and the cache verifies.
func TestConcurrentAppliesInSeparateProcesses(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 2; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ENGINE_TEST_APPLY_DIR="+te.dir, "ENGINE_TEST_APPLY_STORE="+te.store.Dir())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	total := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("apply %d: %v\n%s", i, err, outs[i])
		}
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(outs[i].String()), "ran %d", &n); err != nil {
			t.Fatalf("apply %d printed %q", i, outs[i])
		}
		total += n
	}
	// The record lock makes the second apply wait; it then finds everything built and runs nothing.
	if total != 9 {
		t.Errorf("the two applies ran %d steps together, want 9 (each step once)", total)
	}
	rep, err := te.store.VerifyAll(context.Background(), state.VerifyOptions{})
	if err != nil || len(rep.Bad) != 0 {
		t.Fatalf("verify: %v %+v", err, rep.Bad)
	}
	if p := te.plan(te.load()); p.ToRun != 0 {
		t.Errorf("plan after both: %v", actions(p))
	}
}

// Two applies of two configurations that share every step, both waiting for the locks of the fetch and
// the seed: when these are free, each step is built by one apply and reported cached by the other, which
// waited for it (fetch and seed as the disk steps), and the steps ran counts each step once. Each apply
// writes its own export.
func TestConcurrentAppliesReportWhatTheOtherBuiltAsCached(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	other := te.sibling()
	other.writeBase()
	p := te.plan(te.load())
	if p.ToRun != 9 {
		t.Fatalf("plan %v", actions(p))
	}

	// The test holds the fetch's and the seed's locks, as a third apply building them would.
	ctx := context.Background()
	var held []*state.Lock
	want := map[string]bool{}
	for _, id := range []string{"base/fetch", "base/seed"} {
		key := mustKey(t, p.Step(id).Key)
		lock, err := te.store.LockKey(ctx, key, state.LockOptions{Purpose: "test"})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, lock)
		want["object "+key.Short()] = true
	}

	type applied struct {
		res *Result
		err error
	}
	envs := []*testEnv{te, other}
	recs := []lockWaits{newLockWaits(), newLockWaits()}
	results := make([]chan applied, len(envs))
	for i, env := range envs {
		results[i] = make(chan applied, 1)
		cfg := env.load()
		go func() {
			res, err := env.engine(recs[i]).Apply(ctx, cfg)
			results[i] <- applied{res, err}
		}()
	}
	// Release the locks only when both applies have planned every step to run and wait for both locks.
	timeout := time.After(time.Minute)
	for i, rec := range recs {
		waiting := map[string]bool{}
		for len(waiting) < len(want) {
			select {
			case name := <-rec.names:
				if want[name] {
					waiting[name] = true
				}
			case <-timeout:
				t.Fatalf("apply %d waits for %v only, want %v", i, waiting, want)
			}
		}
	}
	for _, lock := range held {
		if err := lock.Unlock(); err != nil {
			t.Fatal(err)
		}
	}

	ran, cached := 0, 0
	for i := range envs {
		r := <-results[i]
		if r.err != nil {
			t.Fatalf("apply %d: %v", i, r.err)
		}
		ran += r.res.Ran
		cached += r.res.Cached
	}
	for _, ip := range p.Images {
		for _, sp := range ip.Steps {
			got := []string{string(recs[0].finished[sp.ID]), string(recs[1].finished[sp.ID])}
			sort.Strings(got)
			want := []string{string(StatusCached), string(StatusDone)}
			if sp.Kind == "export" {
				want = []string{string(StatusDone), string(StatusDone)}
			}
			if strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s finished %v in the two applies, want %v", sp.ID, got, want)
			}
		}
	}
	if ran != 10 {
		t.Errorf("the two applies ran %d steps together, want 10 (each step once, and each its export)", ran)
	}
	if total := len(p.Images[0].Steps) * len(envs); ran+cached != total {
		t.Errorf("ran %d + cached %d while applying = %d, want every step of both applies (%d)", ran, cached, ran+cached, total)
	}
}

// A source served over loopback HTTP through go-getter, checked against a GNU sums file: downloaded once,
// and plan fetches only the sums file.
func TestApplyHTTPSource(t *testing.T) {
	te := newTestEnv(t)
	srvDir := t.TempDir()
	sum := makeDisk(t, filepath.Join(srvDir, "cloud.raw"), 0x33)
	if err := os.WriteFile(filepath.Join(srvDir, "SHA256SUMS"), []byte(sum+"  cloud.raw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, requests := serveDir(t, srvDir)
	te.writeBase()
	te.replace(`path = "disk.raw"`, fmt.Sprintf("url      = %q\n    checksum = %q", srv.URL+"/cloud.raw", "file:"+srv.URL+"/SHA256SUMS"))

	p := te.plan(te.load())
	if requests.get("/cloud.raw") != 0 || requests.get("/SHA256SUMS") != 1 {
		t.Fatalf("plan downloaded the image: %v", requests.n)
	}
	if p.ToRun != 9 {
		t.Fatalf("plan %v", actions(p))
	}
	res, rec := mustApply(t, te, te.load())
	if res.Ran != 9 || requests.get("/cloud.raw") != 1 {
		t.Fatalf("ran %d, image requests %d: %v", res.Ran, requests.get("/cloud.raw"), rec.errs)
	}
	res, _ = mustApply(t, te, te.load())
	if res.Ran != 0 || requests.get("/cloud.raw") != 1 {
		t.Fatalf("second apply ran %d, image requests %d", res.Ran, requests.get("/cloud.raw"))
	}

	// The same image from another URL (a mirror) with the same checksum hits the cache.
	mirror, mirrorRequests := serveDir(t, srvDir)
	te.replace(srv.URL+"/cloud.raw", mirror.URL+"/cloud.raw")
	te.replace("file:"+srv.URL, "file:"+mirror.URL)
	if p := te.plan(te.load()); p.ToRun != 0 {
		t.Errorf("a mirror of the same image re-runs: %v", actions(p))
	}
	if mirrorRequests.get("/cloud.raw") != 0 {
		t.Error("plan downloaded from the mirror")
	}

	// A new image behind the URL: the sums file changes, the fetch and everything after re-run.
	sum = makeDisk(t, filepath.Join(srvDir, "cloud.raw"), 0x44)
	if err := os.WriteFile(filepath.Join(srvDir, "SHA256SUMS"), []byte(sum+"  cloud.raw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p = te.plan(te.load())
	if p.Step("base/fetch").Action != ActionRun || !strings.Contains(reasonsOf(p, "base/fetch"), "the source image changed (new checksum)") {
		t.Errorf("new image: %v %q", actions(p), reasonsOf(p, "base/fetch"))
	}
	if u, _ := url.Parse(mirror.URL); u.Hostname() != "127.0.0.1" {
		t.Errorf("test server not on loopback: %s", mirror.URL)
	}
}

package engine

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/config"
	"gitlab.com/imgform/imgform/state"
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
	e := &Engine{Store: st, Guest: &layerGuest{}, Hooks: rec}
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
	if total != 8 {
		t.Errorf("the two applies ran %d steps together, want 8 (each step once)", total)
	}
	rep, err := te.store.VerifyAll(context.Background(), state.VerifyOptions{})
	if err != nil || len(rep.Bad) != 0 {
		t.Fatalf("verify: %v %+v", err, rep.Bad)
	}
	if p := te.plan(te.load()); p.ToRun != 0 {
		t.Errorf("plan after both: %v", actions(p))
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
	if p.ToRun != 8 {
		t.Fatalf("plan %v", actions(p))
	}
	res, rec := mustApply(t, te, te.load())
	if res.Ran != 8 || requests.get("/cloud.raw") != 1 {
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

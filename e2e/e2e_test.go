// Package e2e builds the example image for real: QEMU under TCG, cloud-init, SSH, provisioners, cleanup,
// the zstd export and the test step, which boots the result as a new instance and checks that it is
// golden, against the Debian 12 test image of scripts/build-test-image.sh.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/debuglog"
	"gitlab.com/imgform/imgform/internal/engine"
	"gitlab.com/imgform/imgform/internal/fsutil"
	"gitlab.com/imgform/imgform/internal/kinds"
	"gitlab.com/imgform/imgform/internal/remote"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/export"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
	"gitlab.com/imgform/imgform/internal/steps/qemu/qemutest"
	"gitlab.com/imgform/imgform/internal/steps/vm"
)

type env struct {
	t      *testing.T
	dir    string
	store  *state.Store
	img    string
	rec    *recorder
	remote *remote.Cache // nil: no remote cache
}

func setup(t *testing.T) *env {
	t.Helper()
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
	dir := filepath.Join(t.TempDir(), "debian-12-base")
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "examples", "debian-12-base"), dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, dir: dir, store: st, img: img}
}

func (e *env) load() *config.Config {
	e.t.Helper()
	cfg, diags := config.Load(e.dir, config.LoadOptions{Env: []string{}, Vars: []config.VarArg{
		{Name: "source_url", Value: e.img},
		{Name: "source_checksum", Value: "file:" + e.img + ".SHA256SUMS"},
		{Name: "zstd_level", Value: "3"},
	}})
	if diags.HasErrors() {
		e.t.Fatal(diags.Error())
	}
	return cfg
}

func (e *env) engine() *engine.Engine {
	e.rec = newRecorder(e.t)
	runner := &vm.Runner{
		Resolve: func(ctx context.Context, want string) (string, string, error) { return qemu.AccelTCG, "", nil },
	}
	return &engine.Engine{Store: e.store, Kinds: kinds.All(), Machines: runner, Hooks: e.rec, Remote: e.remote}
}

func (e *env) apply(timeout time.Duration) (*engine.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return e.engine().Apply(ctx, e.load())
}

func (e *env) plan() *engine.Plan {
	p, err := e.engine().Plan(context.Background(), e.load())
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func noQEMULeft(t *testing.T, storeDir string) {
	t.Helper()
	out, _ := exec.Command("pgrep", "-af", "qemu-system").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, storeDir) {
			t.Errorf("a QEMU of this build is still running: %s", line)
		}
	}
}

// The example, built for real on the ifupdown variant of the test image, with nothing but its network block
// to set up the network: the build's own test step boots the output as a new instance and must pass every
// check. Machine A builds with a remote cache on a real registry; machine B (another empty store) then
// gets the same output by downloading it, and makes a change of the last provisioner with a test that fails
// on purpose, pulling only the chain it needs; A then finds B's results in the remote. (A failing
// provisioner: drill 4.)
func TestExampleEndToEnd(t *testing.T) {
	e := setup(t)
	reg := registrytest.Start(t, registrytest.Options{})
	e.remote = openRemote(t, reg)

	// The full build writes the debug log (IMGFORM_LOG=debug, -log-file): what a user reads when a build
	// misbehaves below the steps.
	debugLog := filepath.Join(t.TempDir(), "debug.log")
	logFile, err := os.OpenFile(debugLog, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := debuglog.Setup(debuglog.LevelDebug, logFile); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := e.apply(60 * time.Minute)
	if err := errors.Join(debuglog.Setup("off", nil), logFile.Close()); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	fullBuild := time.Since(start)
	checkDebugLog(t, debugLog)
	noQEMULeft(t, e.store.Dir())
	out := filepath.Join(e.dir, "dist", "debian-12-base-2026.11.qcow2.zst")
	if len(res.Outputs) != 1 || res.Outputs[0].Path != "dist/debian-12-base-2026.11.qcow2.zst" || res.Outputs[0].Verification != "passed" {
		t.Fatalf("outputs %+v", res.Outputs)
	}
	for _, f := range []string{out, filepath.Join(e.dir, "dist", "SHA256SUMS")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
	// The motd provisioner copies the guest's dpkg database out next to the image (file { direction =
	// "download" }), read from the real guest over SSH after the provisioner's commands.
	dpkgStatus := filepath.Join(e.dir, "dist", "debian-12-base-2026.11.dpkg-status")
	if b, err := os.ReadFile(dpkgStatus); err != nil || !strings.Contains(string(b), "Package: openssh-server\n") ||
		!strings.Contains(string(b), "Package: cloud-init\n") {
		t.Errorf("the downloaded dpkg status (%d bytes, %v) lacks openssh-server or cloud-init", len(b), err)
	}
	if !e.rec.said("wrote dist/debian-12-base-2026.11.dpkg-status") {
		t.Error("apply did not report writing the downloaded file")
	}
	m := e.manifest()
	checks := map[string]string{}
	for _, c := range m.Verification.Checks {
		checks[c.Name] = c.Status
		if c.Status != step.CheckPassed {
			t.Errorf("check %s: %s: %s", c.Name, c.Status, c.Detail)
		}
	}
	// dns too: the example switches resolved on, and the network handoff points resolv.conf at it.
	for _, name := range []string{"boot", "cloud-init", "machine-id", "ssh-host-keys", "build-user", "network", "dns",
		"build-traces", "test motd", "test admin-user", "test packages"} {
		if checks[name] == "" {
			t.Errorf("no result of check %s in the manifest: %+v", name, m.Verification)
		}
	}
	if m.Verification.Status != export.VerificationPassed {
		t.Errorf("verification %+v", m.Verification)
	}
	if sums, _ := os.ReadFile(filepath.Join(e.dir, "dist", "SHA256SUMS")); strings.Contains(string(sums), "unverified") {
		t.Errorf("SHA256SUMS %q", sums)
	}

	t.Run("the GitLab CI template reuses the build", func(t *testing.T) {
		checkCITemplate(t, e.dir, reg.Host)
	})

	a := e
	e = a.secondMachine(reg)
	t.Run("a second machine downloads the outputs", func(t *testing.T) {
		p := e.plan()
		if got := shortActions(p); p.CachedRemote != len(strings.Fields(got)) || p.ToRun != 0 {
			t.Fatalf("B's plan: %s (%d from the remote)", got, p.CachedRemote)
		}
		start := time.Now()
		if _, err := e.apply(20 * time.Minute); err != nil {
			t.Fatalf("B's apply: %v", err)
		}
		// Figures for docs/benchmarks.md (logged, not asserted): the download against A's full build, and
		// the bytes that travelled against the size of A's store.
		logTransfer(t, "fresh runner, warm remote: apply (outputs downloaded)", time.Since(start), fullBuild, a, e)
		if got := e.rec.with(engine.StatusPulled, engine.StatusRestored, engine.StatusDone); got != "debian-12-base/export/qcow2=restored debian-12-base/test=pulled" {
			t.Errorf("B's apply: %s; want only the output and the test's report downloaded", got)
		}
		if sha256Of(t, out) != sha256Of(t, filepath.Join(e.dir, "dist", "debian-12-base-2026.11.qcow2.zst")) {
			t.Error("B's output differs from A's")
		}
		if m := e.manifest(); m.Verification.Status != export.VerificationPassed {
			t.Errorf("B's manifest verification %+v", m.Verification)
		}
		if _, ok, _ := e.store.Lookup(mustKey(t, p.Step("debian-12-base/boot").Key)); ok {
			t.Error("B pulled the boot layer, which it does not need")
		}
		// The downloaded file comes alone from the motd layer's object in the remote, not with the layer.
		if sha256Of(t, dpkgStatus) != sha256Of(t, filepath.Join(e.dir, "dist", "debian-12-base-2026.11.dpkg-status")) {
			t.Error("B's downloaded dpkg status differs from A's")
		}
		if _, ok, _ := e.store.Lookup(mustKey(t, p.Step("debian-12-base/provision/motd").Key)); ok {
			t.Error("B pulled the motd layer for its downloaded file")
		}
		if !e.rec.said("wrote dist/debian-12-base-2026.11.dpkg-status", "pulled from the remote cache") {
			t.Error("B did not report pulling the downloaded file from the remote cache")
		}
	})
	out = filepath.Join(e.dir, "dist", "debian-12-base-2026.11.qcow2.zst")

	t.Run("incremental, with a test that fails", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(e.dir, "debian-12-base.imgform.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		// host_loopback = true opens the guest's way to the host's loopback (slirp's 10.0.2.2), which the
		// full build above did not have (internal/steps/qemu's TestGuest shows that), and leaves every key as
		// it was: only the changed provisioner runs, and it reaches a server on the host's 127.0.0.1.
		srv := qemutest.ListenLoopback(t)
		probe := fmt.Sprintf(`timeout 20 bash -c 'exec 3<>/dev/tcp/10.0.2.2/%d'`, srv.Port)
		changed := strings.Replace(string(b), `inline = ["test -s /etc/motd"]`, `inline = ["test -s /etc/motd", "echo changed", "`+probe+`"]`, 1)
		changed = strings.Replace(changed, "  output \"qcow2\" {", "  test \"fails\" {\n    inline = [\"echo the test breaks here\", \"false\"]\n  }\n\n  output \"qcow2\" {", 1)
		changed = strings.Replace(changed, `firmware    = "bios"`, "firmware    = \"bios\"\n    host_loopback = true", 1)
		if changed == string(b) || !strings.Contains(changed, "echo changed") || !strings.Contains(changed, "host_loopback") {
			t.Fatal("the example's last provisioner, machine block or output changed shape; update this test")
		}
		if err := os.WriteFile(filepath.Join(e.dir, "debian-12-base.imgform.hcl"), []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		p := e.plan()
		want := "fetch=cached seed=cached boot=cached provision/motd=run cleanup=run export/qcow2=run test=run"
		if got := shortActions(p); got != want {
			t.Fatalf("plan %s\nwant %s", got, want)
		}

		start := time.Now()
		_, err = e.apply(30 * time.Minute)
		logTransfer(t, "fresh runner, warm remote: change of the last provisioner", time.Since(start), fullBuild, a, e)
		if err == nil || !strings.Contains(err.Error(), "test fails") || !strings.Contains(err.Error(), "the test breaks here") {
			t.Fatalf("apply with a failing test: %v", err)
		}
		noQEMULeft(t, e.store.Dir())
		if got := strings.Join(e.rec.ran(), " "); got != "debian-12-base/cleanup debian-12-base/export/qcow2 debian-12-base/provision/motd" {
			t.Errorf("incremental apply ran %s", got)
		}
		// The layer below came from A with A's VM state, saved with the isolated network: the user-mode
		// network of host_loopback is other hardware, so the session booted it (a resume: resume_test.go).
		if !e.rec.said("booting the cached layer of", "instead of resuming", "user network") {
			t.Error("no warning that the state saved with the isolated network was booted instead of resumed")
		}
		if srv.Accepted() == 0 {
			t.Error("with host_loopback = true the provisioner did not reach the host's loopback at 10.0.2.2")
		}
		if e.rec.finished["debian-12-base/test"] != engine.StatusFailed {
			t.Errorf("test step %s", e.rec.finished["debian-12-base/test"])
		}
		if _, err := os.Stat(out); err != nil {
			t.Errorf("the output was not kept: %v", err)
		}
		if sums, _ := os.ReadFile(filepath.Join(e.dir, "dist", "SHA256SUMS")); !strings.HasPrefix(string(sums), "# unverified: ") {
			t.Errorf("SHA256SUMS does not mark the output unverified: %q", sums)
		}
		if m := e.manifest(); m.Verification.Status != export.VerificationFailed {
			t.Errorf("manifest verification %+v", m.Verification)
		}
		if got := shortActions(e.plan()); got != "fetch=cached seed=cached boot=cached provision/motd=cached cleanup=cached export/qcow2=cached test=run" {
			t.Errorf("plan after the failed test: %s", got)
		}
		// B pushed what it built: A, with the same change, finds it in the remote (the failed test is not
		// a result, so it runs).
		if err := os.WriteFile(filepath.Join(a.dir, "debian-12-base.imgform.hcl"), []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		p = a.plan()
		for _, id := range []string{"provision/motd", "cleanup", "export/qcow2"} {
			if sp := p.Step("debian-12-base/" + id); sp == nil || sp.Action != engine.ActionCached || sp.Remote == nil {
				t.Errorf("A's plan after B's apply: %s is %+v, want cached (remote)", id, sp)
			}
		}
	})
}

// openRemote connects to the test registry's repository "imgform-cache", with no credentials.
func openRemote(t *testing.T, reg *registrytest.Registry) *remote.Cache {
	t.Helper()
	ref, err := remote.Parse("oci://" + reg.Host + "/imgform-cache")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := remote.Open(context.Background(), ref, remote.Options{Getenv: func(string) string { return "" },
		DockerConfig: filepath.Join(t.TempDir(), "config.json")})
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// secondMachine is another machine with the same configuration: an empty store, its own copy of the
// configuration folder (without outputs), the same remote cache.
func (e *env) secondMachine(reg *registrytest.Registry) *env {
	e.t.Helper()
	root, err := qemutest.RepoRoot()
	if err != nil {
		e.t.Fatal(err)
	}
	dir := filepath.Join(e.t.TempDir(), "debian-12-base")
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "examples", "debian-12-base"), dir).CombinedOutput(); err != nil {
		e.t.Fatalf("cp: %v %s", err, out)
	}
	st, err := state.Open(e.t.TempDir())
	if err != nil {
		e.t.Fatal(err)
	}
	return &env{t: e.t, dir: dir, store: st, img: e.img, remote: openRemote(e.t, reg)}
}

// logTransfer logs an apply's time against the full build and the remote traffic so far against the size
// of the full build's store.
func logTransfer(t *testing.T, what string, took, full time.Duration, a, b *env) {
	t.Helper()
	var size int64
	objs, err := a.store.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		size += o.Size
	}
	ca, cb := a.remote.Counters(), b.remote.Counters()
	t.Logf("bench: %s: %s, %.3f of the full build (%s); A pushed %d MiB, B pulled %d MiB and pushed %d MiB; A's store %d MiB",
		what, took.Round(time.Second), took.Seconds()/full.Seconds(), full.Round(time.Second),
		ca.BytesPushed>>20, cb.BytesPulled>>20, cb.BytesPushed>>20, size>>20)
}

func sha256Of(t *testing.T, path string) string {
	t.Helper()
	sum, _, err := fsutil.HashFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func mustKey(t *testing.T, s string) state.Key {
	t.Helper()
	k, err := state.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (e *env) manifest() export.Manifest {
	e.t.Helper()
	m, err := export.ReadManifest(filepath.Join(e.dir, "dist", "debian-12-base.manifest.json"))
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func shortActions(p *engine.Plan) string {
	var parts []string
	for _, ip := range p.Images {
		for _, sp := range ip.Steps {
			parts = append(parts, strings.TrimPrefix(sp.ID, ip.Name+"/")+"="+string(sp.Action))
		}
	}
	return strings.Join(parts, " ")
}

// checkDebugLog looks for what the debug log promises (docs/configuration.md, "Seeing what happens"): QEMU's
// and qemu-img's command lines, QMP traffic both ways, and SSH connection attempts.
func checkDebugLog(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	for _, want := range []string{"[DEBUG] qemu: starting ", "-machine ", `[DEBUG] qmp: -> {"execute":"qmp_capabilities"`,
		"[DEBUG] qmp: <- ", "[DEBUG] qemu-img: ", "[DEBUG] ssh: ", " connected at attempt "} {
		if !strings.Contains(log, want) {
			t.Errorf("the debug log (%d bytes) lacks %q", len(b), want)
		}
	}
	t.Logf("debug log: %d lines", strings.Count(log, "\n"))
}

// Package e2e builds the example image for real: QEMU under TCG, cloud-init, SSH, provisioners, cleanup
// and the zstd export, against the Debian 12 test image of scripts/build-test-image.sh, then boots the
// result as a new instance and checks that it is golden.
package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/config"
	"gitlab.com/imgform/imgform/engine"
	"gitlab.com/imgform/imgform/state"
	"gitlab.com/imgform/imgform/steps/export"
	"gitlab.com/imgform/imgform/steps/qemu"
	"gitlab.com/imgform/imgform/steps/qemu/qemutest"
	"gitlab.com/imgform/imgform/steps/ssh"
	"gitlab.com/imgform/imgform/steps/vm"
)

type env struct {
	t     *testing.T
	dir   string
	store *state.Store
	img   string
	rec   *recorder
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
	return &engine.Engine{Store: e.store, Guest: &vm.Runner{
		Resolve: func(ctx context.Context, want string) (string, string, error) { return qemu.AccelTCG, "", nil },
	}, Hooks: e.rec}
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

func TestExampleEndToEnd(t *testing.T) {
	e := setup(t)

	res, err := e.apply(60 * time.Minute)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	noQEMULeft(t, e.store.Dir())
	out := filepath.Join(e.dir, "dist", "debian-12-base-2026.11.qcow2.zst")
	if len(res.Outputs) != 1 || res.Outputs[0].Path != "dist/debian-12-base-2026.11.qcow2.zst" {
		t.Fatalf("outputs %+v", res.Outputs)
	}
	for _, f := range []string{out, filepath.Join(e.dir, "dist", "SHA256SUMS"), filepath.Join(e.dir, "dist", "debian-12-base.manifest.json")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatal(err)
		}
	}
	buildPub, buildHostKeys := e.buildSecrets()

	t.Run("golden", func(t *testing.T) { checkGolden(t, out, buildPub, buildHostKeys) })

	t.Run("incremental", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(e.dir, "debian-12-base.imgform.hcl"))
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(b), `inline = ["test -s /etc/motd"]`, `inline = ["test -s /etc/motd", "echo changed"]`, 1)
		if changed == string(b) {
			t.Fatal("the example's last provisioner changed shape; update this test")
		}
		if err := os.WriteFile(filepath.Join(e.dir, "debian-12-base.imgform.hcl"), []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		p := e.plan()
		want := "fetch=cached seed=cached boot=cached provision/networkd=cached provision/motd=run cleanup=run export/qcow2=run"
		if got := shortActions(p); got != want {
			t.Fatalf("plan %s\nwant %s", got, want)
		}
		if _, err := e.apply(30 * time.Minute); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(e.rec.ran(), " "); got != "debian-12-base/cleanup debian-12-base/export/qcow2 debian-12-base/provision/motd" {
			t.Errorf("incremental apply ran %s", got)
		}
		if res, err := e.apply(10 * time.Minute); err != nil || res.Ran != 0 {
			t.Errorf("apply after that ran %v: %v", e.rec.ran(), err)
		}
	})

	t.Run("failing provisioner", func(t *testing.T) {
		b, _ := os.ReadFile(filepath.Join(e.dir, "debian-12-base.imgform.hcl"))
		broken := strings.Replace(string(b), "  cleanup {", "  provision \"boom\" {\n    inline = [\"echo it breaks here\", \"exit 1\"]\n  }\n\n  cleanup {", 1)
		if err := os.WriteFile(filepath.Join(e.dir, "debian-12-base.imgform.hcl"), []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := e.apply(30 * time.Minute)
		if err == nil || !strings.Contains(err.Error(), "exited with status 1") || !strings.Contains(err.Error(), "it breaks here") {
			t.Fatalf("error %v", err)
		}
		noQEMULeft(t, e.store.Dir())
		p := e.plan()
		if got := shortActions(p); !strings.HasPrefix(got, "fetch=cached seed=cached boot=cached provision/networkd=cached provision/motd=cached provision/boom=run") {
			t.Errorf("layers before the failure not kept: %s", got)
		}
	})
}

// buildSecrets returns the build key's public line and the build's host keys, from the store.
func (e *env) buildSecrets() (string, string) {
	objs, err := e.store.List()
	if err != nil {
		e.t.Fatal(err)
	}
	var pub, hk string
	for _, o := range objs {
		obj, ok, _ := e.store.Lookup(o.Key)
		if !ok {
			continue
		}
		if b, err := os.ReadFile(obj.Path(engine.BuildKeyPubFile)); err == nil {
			pub = strings.Fields(string(b))[1]
		}
		if o.Kind == string(engine.KindCleanup) {
			if b, err := os.ReadFile(obj.Path(engine.HostKeysFile)); err == nil {
				hk = string(b)
			}
		}
	}
	if pub == "" || hk == "" {
		e.t.Fatalf("no build key (%q) or host keys (%q) in the store", pub, hk)
	}
	return pub, hk
}

// checkGolden boots the exported image as a new instance and checks what a golden image must be.
func checkGolden(t *testing.T, out, buildPub, buildHostKeys string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := t.TempDir()
	disk := filepath.Join(dir, "image.qcow2")
	if err := export.Decompress(ctx, out, disk); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay.qcow2")
	if err := qemu.CreateOverlay(ctx, overlay, disk, "qcow2", 0); err != nil {
		t.Fatal(err)
	}
	g, err := qemutest.Boot(ctx, qemutest.Options{Dir: dir, Disk: overlay, InstanceID: "golden-check-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c, hk, err := g.Dial(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ssh.WaitCloudInit(ctx, c); err != nil {
		t.Fatal(err)
	}
	run := func(cmd string) string {
		b, code, err := c.Output(ctx, cmd, ssh.RunOptions{Sudo: true})
		if err != nil || code != 0 {
			t.Errorf("%s: exit %d: %v\n%s", cmd, code, err, b)
		}
		return strings.TrimSpace(string(b))
	}
	if id := run("cat /etc/machine-id"); len(id) != 32 {
		t.Errorf("machine-id %q", id)
	}
	if strings.Contains(buildHostKeys, strings.Fields(string(ssh.MarshalHostKeys(hk.Accepted())))[1]) {
		t.Error("the instance has the build's SSH host key")
	}
	if got := run("grep -rl " + ssh.Quote(buildPub) + " /home /root /etc /var/lib/cloud 2>/dev/null || true"); got != "" {
		t.Errorf("the build key is still authorized in: %s", got)
	}
	if got := run("id imgform-build 2>&1 || true"); !strings.Contains(got, "no such user") {
		t.Errorf("build user: %s", got)
	}
	if got := run("ip -4 route show default"); !strings.Contains(got, "metric 100") {
		t.Errorf("default route %q lacks metric 100", got)
	}
	if got := run("networkctl list --no-legend"); !strings.Contains(got, "routable") || !strings.Contains(got, "configured") {
		t.Errorf("networkd: %s", got)
	}
	if got := run("readlink /etc/resolv.conf"); got != "/run/systemd/resolve/stub-resolv.conf" {
		t.Errorf("resolv.conf -> %q", got)
	}
	if got := run("ls /var/lib/cloud/instances"); got != "golden-check-1" {
		t.Errorf("cloud-init instances %q: data from the build remains", got)
	}
	if got := run("id -nG debian"); !strings.Contains(got, "adm") || !strings.Contains(got, "sudonp") || !strings.Contains(got, "sudo") {
		t.Errorf("admin groups %q", got)
	}
	if got := run("cat /etc/sudoers.d/sudonp"); got != "%sudonp ALL=(ALL:ALL) NOPASSWD: ALL" {
		t.Errorf("sudoers %q", got)
	}
	if got := run("cat /etc/motd"); !strings.Contains(got, "built by imgform") {
		t.Errorf("motd %q", got)
	}
	if got := run("dpkg-query -W -f '${Status}' etckeeper unattended-upgrades"); strings.Count(got, "install ok installed") != 2 {
		t.Errorf("packages %q", got)
	}
	if got := run("test -e /etc/network/interfaces.d/50-cloud-init && echo present || echo absent"); got != "absent" {
		t.Errorf("ifupdown config from cloud-init: %s", got)
	}
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

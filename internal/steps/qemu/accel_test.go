package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestResolverTable(t *testing.T) {
	kvmDev := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(kvmDev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "no-kvm")
	works := func(context.Context, string) (bool, string, error) { return true, "reached 64-bit mode", nil }
	hangs := func(context.Context, string) (bool, string, error) { return false, "printed nothing", nil }
	fails := func(context.Context, string) (bool, string, error) { return false, "", errors.New("no qemu") }
	cases := map[string]struct {
		want, env, dev string
		probe          func(context.Context, string) (bool, string, error)
		accel, warning string // warning: a substring, "" for none
		err            string
		probed         bool
	}{
		"auto with working kvm":     {want: "auto", dev: kvmDev, probe: works, accel: "kvm", probed: true},
		"empty means auto":          {want: "", dev: kvmDev, probe: works, accel: "kvm", probed: true},
		"auto with broken kvm":      {want: "auto", dev: kvmDev, probe: hangs, accel: "tcg", warning: "KVM present but does not run guests (nested virtualization?); using TCG, builds will be slower", probed: true},
		"auto without /dev/kvm":     {want: "auto", dev: missing, probe: works, accel: "tcg", warning: "KVM is not available"},
		"kvm forced":                {want: "kvm", dev: missing, probe: hangs, accel: "kvm"},
		"tcg forced":                {want: "tcg", dev: kvmDev, probe: works, accel: "tcg"},
		"env overrides config":      {want: "kvm", env: "tcg", dev: kvmDev, probe: works, accel: "tcg"},
		"env auto probes":           {want: "tcg", env: "auto", dev: kvmDev, probe: hangs, accel: "tcg", warning: "does not run guests", probed: true},
		"env is case-insensitive":   {want: "auto", env: "KVM", dev: missing, probe: hangs, accel: "kvm"},
		"unknown value":             {want: "hvf", dev: kvmDev, probe: works, err: `unknown accelerator "hvf"`},
		"probe that cannot run":     {want: "auto", dev: kvmDev, probe: fails, err: "no qemu", probed: true},
		"unknown value in env":      {want: "auto", env: "xen", dev: kvmDev, probe: works, err: `unknown accelerator "xen"`},
		"broken kvm names the knob": {want: "auto", dev: kvmDev, probe: hangs, accel: "tcg", warning: "IMGFORM_ACCELERATOR=kvm", probed: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			probed := false
			r := &Resolver{
				Getenv:    func(k string) string { return map[string]string{AcceleratorEnv: tc.env}[k] },
				KVMDevice: tc.dev,
				Probe: func(ctx context.Context, bin string) (bool, string, error) {
					probed = true
					return tc.probe(ctx, bin)
				},
			}
			accel, warning, err := r.Resolve(context.Background(), tc.want)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if accel != tc.accel {
				t.Errorf("accelerator %q, want %q", accel, tc.accel)
			}
			if tc.warning == "" && warning != "" || !strings.Contains(warning, tc.warning) {
				t.Errorf("warning %q, want %q", warning, tc.warning)
			}
			if probed != tc.probed {
				t.Errorf("probed %v, want %v", probed, tc.probed)
			}
		})
	}
}

func TestResolverCachesTheProbe(t *testing.T) {
	kvmDev := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(kvmDev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	calls := 0
	fail := true
	r := &Resolver{Getenv: func(string) string { return "" }, KVMDevice: kvmDev,
		Probe: func(context.Context, string) (bool, string, error) {
			calls++
			if fail {
				return false, "", errors.New("interrupted")
			}
			return false, "hung", nil
		}}
	if _, _, err := r.Resolve(context.Background(), "auto"); err == nil {
		t.Fatal("want the probe's error")
	}
	fail = false
	for range 3 {
		if accel, _, err := r.Resolve(context.Background(), "auto"); err != nil || accel != "tcg" {
			t.Fatalf("Resolve = %q, %v", accel, err)
		}
	}
	if calls != 2 {
		t.Errorf("probe ran %d times, want 2 (an error is not remembered, an answer is)", calls)
	}
}

// TestKVMProbeRunsUnderTCG boots the probe guest with software emulation, which works on every host: it
// proves the guest really reaches 64-bit mode and says so, so that a silent probe means broken KVM.
func TestKVMProbeRunsUnderTCG(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ok, detail, err := runProbe(ctx, "qemu-system-x86_64", AccelTCG, "max", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("the probe guest did not reach 64-bit mode under TCG: %s", detail)
	}
}

// TestResolveAcceleratorOnThisHost runs the real probe. Its verdict is checked against a second, longer
// run of the same guest under KVM (30 s instead of 10 s, another CPU model): on this project's build hosts KVM guests
// hang once they leave real mode, and auto must then pick TCG with the loud warning; on a host with working
// KVM it must pick KVM.
func TestResolveAcceleratorOnThisHost(t *testing.T) {
	needQEMU(t)
	if testing.Short() {
		t.Skip("runs QEMU for up to 40 s; not with -short")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := &Resolver{Getenv: func(string) string { return "" }}
	accel, warning, err := r.Resolve(ctx, "auto")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("auto -> %s; warning: %s", accel, warning)
	if _, err := os.Stat("/dev/kvm"); err != nil {
		if accel != AccelTCG || !strings.Contains(warning, "KVM is not available") {
			t.Fatalf("without /dev/kvm: %q, %q", accel, warning)
		}
		return
	}
	// The ground truth uses QEMU's default CPU model: with -cpu host, as the probe, QEMU may fail at once
	// (here: "failed to set MSR 0x10a"), while a plain CPU model shows the hang itself; both mean KVM
	// cannot run the build VM.
	truth, detail, err := runProbe(ctx, "qemu-system-x86_64", AccelKVM, "qemu64", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ground truth: KVM runs guests: %v (%s)", truth, detail)
	switch {
	case truth && accel != AccelKVM:
		t.Errorf("KVM works here (%s) but auto chose %s: %s", detail, accel, warning)
	case !truth && accel != AccelTCG:
		t.Errorf("KVM guests hang here (%s) but auto chose %s", detail, accel)
	case !truth && !strings.Contains(warning, "KVM present but does not run guests (nested virtualization?); using TCG, builds will be slower"):
		t.Errorf("fallback to TCG without the loud warning: %q", warning)
	}
}

// TestKVMProbeMatchesSource reassembles testdata/kvmprobe.S and compares it with the bytes in
// kvmprobe.go, so the comment and the code cannot drift apart.
func TestKVMProbeMatchesSource(t *testing.T) {
	for _, tool := range []string{"as", "ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (apt-get install binutils); the probe's behaviour is still tested under TCG", tool)
		}
	}
	dir := t.TempDir()
	obj, bin := filepath.Join(dir, "p.o"), filepath.Join(dir, "p.bin")
	for _, args := range [][]string{
		{"as", "--32", "-o", obj, "testdata/kvmprobe.S"},
		{"ld", "-m", "elf_i386", "-Ttext=0x100000", "--oformat", "binary", "-o", bin, obj},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	got, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, kvmProbe) {
		t.Errorf("testdata/kvmprobe.S assembles to %d bytes that differ from kvmProbe (%d bytes): regenerate kvmprobe.go", len(got), len(kvmProbe))
	}
}

// needQEMU fails the test, never skips it, when QEMU is missing: a green run must mean QEMU was tested.
func needQEMU(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"qemu-system-x86_64", QemuImg} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: run scripts/install-deps.sh (as root) to install QEMU", bin)
		}
	}
}

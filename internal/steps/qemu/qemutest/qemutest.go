// Package qemutest boots the project's Debian 12 test image in QEMU for tests that need a real guest: a
// qcow2 overlay on the cached image (never the image itself), a NoCloud seed that creates a user for an
// ephemeral build key, and helpers to log in over SSH with the host key pinned from the serial console.
//
// The test image comes from scripts/build-test-image.sh, which builds each variant once and caches it. QEMU
// and qemu-img come from scripts/install-deps.sh. When either is missing the helpers return an error saying
// so: guest tests must fail, not pass silently, on a machine that cannot run them.
package qemutest

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"gitlab.com/imgform/imgform/internal/steps/qemu"
	"gitlab.com/imgform/imgform/internal/steps/seed"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// User is the login user the seed creates.
const User = "builder"

// RequireQEMU returns an error naming scripts/install-deps.sh when QEMU or qemu-img is missing.
func RequireQEMU() error {
	for _, bin := range []string{"qemu-system-x86_64", qemu.QemuImg} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found: run scripts/install-deps.sh (as root) to install QEMU: %w", bin, err)
		}
	}
	return nil
}

// RepoRoot returns the folder holding go.mod, searched upwards from the working folder.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("qemutest: no go.mod above the working folder")
		}
		dir = parent
	}
}

// TestImage returns the path of the cached test image (the default variant, "ifupdown"), building it
// first if needed (minutes, network).
func TestImage(ctx context.Context) (string, error) {
	return TestImageVariant(ctx, "ifupdown")
}

// TestImageVariant is TestImage for a variant of scripts/build-test-image.sh: "ifupdown" (ifupdown manages
// the NIC, cloud-init writes ENI, systemd-networkd disabled) or "netplan" (as on the official genericcloud
// image: cloud-init writes netplan, systemd-networkd manages the NIC).
func TestImageVariant(ctx context.Context, variant string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "build-test-image.sh"), variant)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/build-test-image.sh %s: %w\n%s", variant, err, lastLines(stderr.String(), 20))
	}
	img := strings.TrimSpace(stdout.String())
	if _, err := os.Stat(img); err != nil {
		return "", fmt.Errorf("scripts/build-test-image.sh %s printed %q: %w", variant, img, err)
	}
	return img, nil
}

// Options describe a test guest.
type Options struct {
	// Dir holds the overlay, the seed, the key and the VM's state. Required.
	Dir string
	// Image is the test image; Boot calls TestImage when it is empty.
	Image string
	// Disk, when set, is booted instead of a fresh overlay on Image (for example a layer made earlier).
	Disk string
	// Seed, when set, is attached instead of a new seed; Key must then be the key it authorizes.
	Seed string
	Key  *ssh.Key
	// CloudConfig is added to the #cloud-config that creates the user, verbatim (YAML, top-level keys).
	CloudConfig string
	// InstanceID for meta-data; default "imgform-test-" and the folder's base name.
	InstanceID string
	// CPUs default 2; Memory default 1 GiB.
	CPUs   int
	Memory int64
	// Incoming starts the VM on a saved state instead of a boot (qemu.Options.Incoming).
	Incoming *os.File
}

// Guest is a booted (or booting) test VM.
type Guest struct {
	VM   *qemu.VM
	Key  *ssh.Key
	Disk string // the image the VM was started on
	Seed string // the seed ISO
	Dir  string
}

// Boot creates what Options ask for and starts QEMU under TCG. It returns once QEMU runs; the guest needs
// minutes more to boot (see Dial). ctx bounds QEMU's life: when it ends, QEMU is killed.
func Boot(ctx context.Context, o Options) (*Guest, error) {
	if err := RequireQEMU(); err != nil {
		return nil, err
	}
	g := &Guest{Key: o.Key, Disk: o.Disk, Seed: o.Seed, Dir: o.Dir}
	if g.Disk == "" {
		img := o.Image
		if img == "" {
			var err error
			if img, err = TestImage(ctx); err != nil {
				return nil, err
			}
		}
		g.Disk = filepath.Join(o.Dir, "disk.qcow2")
		// The image's own size: growing it would make the guest run growpart and resize2fs, which cost
		// seconds under TCG and prove nothing here.
		if err := qemu.CreateOverlay(ctx, g.Disk, img, "qcow2", 0, 0); err != nil {
			return nil, err
		}
	}
	if g.Seed == "" {
		if err := g.makeSeed(ctx, o); err != nil {
			return nil, err
		}
	} else if g.Key == nil {
		return nil, errors.New("qemutest: a given seed needs its key")
	}
	state := filepath.Join(o.Dir, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		return nil, err
	}
	vm, err := qemu.Start(ctx, qemu.Options{
		Accelerator: qemu.AccelTCG, // KVM cannot be trusted on test hosts (see ResolveAccelerator)
		CPUs:        o.CPUs,
		Memory:      o.Memory,
		Disk:        g.Disk,
		ExtraDrives: seed.QEMUArgs(g.Seed),
		StateDir:    state,
		Incoming:    o.Incoming,
	})
	if err != nil {
		return nil, err
	}
	g.VM = vm
	return g, nil
}

func (g *Guest) makeSeed(ctx context.Context, o Options) error {
	if g.Key == nil {
		var err error
		if g.Key, err = ssh.GenerateKey(); err != nil {
			return err
		}
	}
	id := o.InstanceID
	if id == "" {
		id = "imgform-test-" + filepath.Base(o.Dir)
	}
	meta, err := seed.MetaData(id, "imgform-test")
	if err != nil {
		return err
	}
	g.Seed = filepath.Join(o.Dir, "seed.iso")
	return seed.Build(ctx, seed.Files{UserData: []byte(UserData(g.Key, o.CloudConfig)), MetaData: meta}, g.Seed)
}

// UserData returns the #cloud-config that creates User with key and passwordless sudo, plus extra.
func UserData(key *ssh.Key, extra string) string {
	return fmt.Sprintf(`#cloud-config
manage_etc_hosts: true
ssh_pwauth: false
users:
  - name: %s
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    lock_passwd: true
    ssh_authorized_keys:
      - %s
%s`, User, key.AuthorizedKey(), extra)
}

// Dial logs in as User, pinning the host key from the serial console (or from pinned when given), and
// waits as long as ctx allows.
func (g *Guest) Dial(ctx context.Context, pinned *ssh.HostKeys) (*ssh.Client, *ssh.HostKeys, error) {
	hk := pinned
	if hk == nil {
		hk = ssh.PinConsole(g.VM.SerialLog())
	}
	c, err := ssh.Dial(ctx, g.VM.SSHAddr(), User, g.Key, hk.Callback(), ssh.WithHostKeys(hk),
		ssh.WithConsoleTail(func() string { return g.VM.Tail(30) }))
	return c, hk, err
}

// Close kills QEMU if it still runs and waits for it to exit.
func (g *Guest) Close() {
	if g == nil || g.VM == nil {
		return
	}
	g.VM.Kill()
	<-g.VM.Exited()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Budget returns how long guest tests may take: want, but at most the test binary's -timeout less a
// minute, so that a slow host ends with the tests' own errors (with the serial console) and their cleanup
// rather than with the panic of the test timeout. Call it after flag.Parse.
func Budget(want time.Duration) time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return want
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return want
	}
	timeout, ok := g.Get().(time.Duration)
	if !ok || timeout <= 0 {
		return want
	}
	return max(min(want, timeout-time.Minute), timeout/2)
}

package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"gitlab.com/imgform/imgform/internal/debuglog"
	"gitlab.com/imgform/imgform/internal/fsutil"
)

// AcceleratorEnv overrides the configured accelerator ("auto", "kvm" or "tcg") for one run, for example
// to force TCG on a host where KVM misbehaves in a way the probe does not catch.
const AcceleratorEnv = "IMGFORM_ACCELERATOR"

// probeTimeout bounds the KVM probe. Working KVM runs it in well under a second even on a busy host;
// broken KVM hangs, so this is what a host with broken KVM pays once per imgform run.
const probeTimeout = 10 * time.Second

// Resolver picks the accelerator. The zero value is ready to use; ResolveAccelerator uses a shared one, so
// the probe runs at most once per process and QEMU binary.
type Resolver struct {
	// Binary is the QEMU system emulator to probe; default "qemu-system-x86_64".
	Binary string
	// Getenv reads AcceleratorEnv; default os.Getenv.
	Getenv func(string) string
	// KVMDevice is checked before probing; default "/dev/kvm".
	KVMDevice string
	// Probe reports whether KVM runs guests; default ProbeKVM. detail says what was seen.
	Probe func(ctx context.Context, binary string) (ok bool, detail string, err error)

	mu    sync.Mutex
	cache map[string]probeResult
}

type probeResult struct {
	ok     bool
	detail string
}

var defaultResolver Resolver

// ResolveAccelerator turns the configured accelerator into "kvm" or "tcg" (see Resolver.Resolve).
func ResolveAccelerator(ctx context.Context, want string) (accel, warning string, err error) {
	return defaultResolver.Resolve(ctx, want)
}

// Resolve returns "kvm" or "tcg" for want ("auto", "kvm", "tcg"; empty means auto), after the override
// in IMGFORM_ACCELERATOR. "kvm" and "tcg" are used as given. "auto" uses KVM only where KVM really runs
// guests: opening /dev/kvm is not enough, since on some hosts (nested virtualization) KVM guests run the
// BIOS and then hang for good when they leave real mode. So auto boots a tiny guest under KVM that must
// reach 64-bit mode and report on its serial port (ProbeKVM). When it falls back to TCG it returns a
// warning meant to be shown prominently: such builds take many times longer.
func (r *Resolver) Resolve(ctx context.Context, want string) (accel, warning string, err error) {
	getenv := r.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if env := strings.TrimSpace(getenv(AcceleratorEnv)); env != "" {
		want = env
	}
	defer func() { debuglog.Debugf("accel", "asked for %q: %q (%s) %v", want, accel, warning, err) }()
	switch strings.ToLower(want) {
	case AccelKVM:
		return AccelKVM, "", nil
	case AccelTCG:
		return AccelTCG, "", nil
	case "", "auto":
	default:
		return "", "", fmt.Errorf("qemu: unknown accelerator %q (auto, kvm or tcg)", want)
	}
	dev := r.KVMDevice
	if dev == "" {
		dev = "/dev/kvm"
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return AccelTCG, fmt.Sprintf("WARNING: KVM is not available (%v); using TCG software emulation, builds will be much slower", err), nil
	}
	if err := f.Close(); err != nil {
		return "", "", fmt.Errorf("qemu: %s: %w", dev, err)
	}
	res, err := r.probe(ctx)
	if err != nil {
		return "", "", err
	}
	if !res.ok {
		return AccelTCG, "WARNING: KVM present but does not run guests (nested virtualization?); using TCG, builds will be slower" +
			" (the KVM probe " + res.detail + "; set " + AcceleratorEnv + "=kvm to insist, =tcg to skip the probe)", nil
	}
	return AccelKVM, "", nil
}

// probe runs the probe once per binary and remembers definite answers; an error (QEMU missing, context
// ended) is not remembered.
func (r *Resolver) probe(ctx context.Context) (probeResult, error) {
	bin := r.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if res, ok := r.cache[bin]; ok {
		return res, nil
	}
	probe := r.Probe
	if probe == nil {
		probe = ProbeKVM
	}
	ok, detail, err := probe(ctx, bin)
	if err != nil {
		return probeResult{}, err
	}
	if r.cache == nil {
		r.cache = map[string]probeResult{}
	}
	res := probeResult{ok: ok, detail: detail}
	r.cache[bin] = res
	return res, nil
}

// ProbeKVM boots kvmProbe under KVM with binary and reports whether it reached 64-bit mode within 10 s;
// detail describes what it saw. err is set only when the probe could not run at all.
func ProbeKVM(ctx context.Context, binary string) (ok bool, detail string, err error) {
	// -cpu host, as the build VM uses under KVM: on some hosts QEMU cannot even set up that CPU.
	return runProbe(ctx, binary, AccelKVM, "host", probeTimeout)
}

// runProbe boots kvmProbe with the accelerator accel and CPU model cpu and waits up to timeout for it to
// reach 64-bit mode.
func runProbe(ctx context.Context, binary, accel, cpu string, timeout time.Duration) (ok bool, detail string, err error) {
	f, err := os.CreateTemp("", "imgform-kvmprobe-*.bin")
	if err != nil {
		return false, "", fmt.Errorf("qemu: KVM probe: %w", err)
	}
	defer func() {
		if rerr := os.Remove(f.Name()); rerr != nil && err == nil {
			err = fmt.Errorf("qemu: KVM probe: %w", rerr)
		}
	}()
	if _, err := f.Write(kvmProbe); err != nil {
		return false, "", errors.Join(fmt.Errorf("qemu: KVM probe: %w", err), f.Close())
	}
	if err := f.Close(); err != nil {
		return false, "", fmt.Errorf("qemu: KVM probe: %w", err)
	}
	cmd := exec.Command(binary, "-accel", accel, "-cpu", cpu, "-machine", "pc", "-m", "16",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", "-kernel", f.Name())
	debuglog.Debugf("accel", "probe: %s", quoteArgs(cmd.Args))
	defer func() { debuglog.Debugf("accel", "probe under %s: ok %v, %s, error %v", accel, ok, detail, err) }()
	// An os.Pipe rather than cmd.StdoutPipe: the waiting goroutine calls cmd.Wait, which would close a
	// StdoutPipe under the reader and lose the last lines.
	stdout, w, err := os.Pipe()
	if err != nil {
		return false, "", fmt.Errorf("qemu: KVM probe: %w", err)
	}
	defer func() { _ = stdout.Close() }() // read end, drained below: nothing to report
	cmd.Stdout = w
	stderr := fsutil.NewTailBuffer(4096)
	cmd.Stderr = stderr
	p, err := startProcess(cmd)
	if cerr := w.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return false, "", fmt.Errorf("qemu: KVM probe: start %s: %w", binary, err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- strings.TrimRight(sc.Text(), "\r")
		}
	}()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var reached string
	for {
		select {
		case line, open := <-lines:
			if !open {
				// End of output: QEMU has exited or is exiting, without the line.
				<-p.exited
				return false, probeExited(p, stderr), nil
			}
			switch {
			case strings.Contains(line, probeWork):
				reached = "ran its 32-bit work but did not reach 64-bit mode"
			case strings.Contains(line, probeProtected):
				reached = "reached protected mode, then ran too slowly to finish a boot loader's worth of work"
			}
			if strings.Contains(line, probeLong) {
				p.kill()
				<-p.exited
				return true, "reached 64-bit mode", nil
			}
		case <-p.exited:
			if ctx.Err() != nil {
				return false, "", fmt.Errorf("qemu: KVM probe: %w", ctx.Err())
			}
			// Output can still be in the pipe when QEMU is gone: read it all before judging.
			for line := range lines {
				if strings.Contains(line, probeLong) {
					return true, "reached 64-bit mode", nil
				}
			}
			return false, probeExited(p, stderr), nil
		case <-tctx.Done():
			p.kill()
			<-p.exited
			if ctx.Err() != nil {
				return false, "", fmt.Errorf("qemu: KVM probe: %w", ctx.Err())
			}
			if reached == "" {
				reached = "printed nothing after the BIOS"
			}
			return false, fmt.Sprintf("%s within %s", reached, timeout), nil
		}
	}
}

// probeExited says why the probe failed when QEMU exited before reaching 64-bit mode.
func probeExited(p *process, stderr *fsutil.TailBuffer) string {
	return fmt.Sprintf("failed: QEMU exited (%v): %s", p.exitErr(), firstLine(stderr.String()))
}

// firstLine returns the first non-empty line of s, for a one-line warning.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return "no message"
}

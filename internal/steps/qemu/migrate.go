package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"
)

// A VM's state (RAM and devices) is QEMU's migration stream. Debian 12's QEMU 7.2 has no file: URI nor
// mapped-ram, so the stream goes through a pipe whose ends imgform holds: on save, QEMU writes into a
// pipe handed over with getfd and imgform reads it (and compresses it, hashes it, stores it); on restore,
// QEMU is started with -incoming fd:3 on a pipe that imgform fills. The disk is not in the stream: the
// destination opens the same chain of layers, which must be the disk as it was when the state was saved.

// migrationPoll is how often SaveState and Restore ask QEMU how far the migration is.
const migrationPoll = 20 * time.Millisecond

// stateFDName is the name the save pipe's write end has in QEMU (getfd).
const stateFDName = "imgform-state"

// incomingFD is the descriptor number of Options.Incoming in QEMU: the first of cmd.ExtraFiles.
const incomingFD = 3

// maxBandwidth lifts QEMU's migration bandwidth limit (128 MiB/s by default, meant for a live migration
// over a shared network): the stream goes to a local pipe.
const maxBandwidth = 1 << 40

// Pause stops the guest's CPUs (QMP stop); its devices finish their pending I/O first.
func (vm *VM) Pause(ctx context.Context) error {
	if err := vm.qmp.Execute(ctx, "stop", nil, nil); err != nil {
		return fmt.Errorf("qemu: pause: %w", err)
	}
	return nil
}

// Continue runs a paused guest again (QMP cont): after Pause, and after Restore.
func (vm *VM) Continue(ctx context.Context) error {
	if err := vm.qmp.Execute(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("qemu: continue: %w", err)
	}
	return nil
}

// migrationInfo is the part of query-migrate's reply SaveState and Restore look at.
type migrationInfo struct {
	Status    string `json:"status"` // none, setup, active, device, completed, failed, cancelled, ...
	ErrorDesc string `json:"error-desc"`
}

// SaveState writes the VM's state to w and returns the number of bytes written. It pauses the guest, runs
// atStop (cut a layer: whatever atStop does to the disk matches the saved state exactly), streams RAM and
// devices once, and runs the guest again, also after an error; an error from atStop cancels the save and
// is returned as is.
//
// The stream is written while the guest stands still, not live: a live save could leave out the pages the
// guest reports free (virtio-balloon's free page hints), but a guest resumed from such a state crashed in
// the balloon driver's hinting work (seen under TCG, 2026-11-30), and the pages it saves are few and
// compress well.
func (vm *VM) SaveState(ctx context.Context, w io.Writer, atStop func() error) (int64, error) {
	if err := vm.Pause(ctx); err != nil {
		return 0, err
	}
	defer func() {
		// A completed save leaves QEMU in "postmigrate"; every other end leaves it paused.
		_ = vm.Continue(context.Background())
	}()
	if err := atStop(); err != nil {
		return 0, err
	}
	fail := func(err error) (int64, error) { return 0, fmt.Errorf("qemu: save state: %w", err) }
	if err := vm.qmp.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(maxBandwidth)}, nil); err != nil {
		return fail(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer pr.Close()
	err = vm.qmp.execute(ctx, "getfd", map[string]string{"fdname": stateFDName}, nil, pw)
	runtime.KeepAlive(pw)
	// QEMU holds its own copy now; ours must go, or the reader never sees the end of the stream.
	if cerr := pw.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	copied := make(chan error, 1)
	var n int64
	go func() {
		var err error
		n, err = io.Copy(w, pr)
		if err != nil {
			// Unblock QEMU: with the read end closed its writes fail and the migration ends as failed.
			_ = pr.Close()
		}
		copied <- err
	}()
	abort := func(err error) (int64, error) {
		// Cancelling makes QEMU close its end; the copy then ends.
		_ = vm.qmp.Execute(context.Background(), "migrate_cancel", nil, nil)
		_ = pr.Close()
		<-copied
		return 0, err
	}
	if err := vm.qmp.Execute(ctx, "migrate", map[string]string{"uri": "fd:" + stateFDName}, nil); err != nil {
		return abort(fmt.Errorf("qemu: save state: %w", err))
	}
	info, err := vm.waitMigration(ctx, "save state")
	if err != nil {
		return abort(err)
	}
	cerr := <-copied
	if info.Status != "completed" {
		return n, fmt.Errorf("qemu: save state: migration %s: %s", info.Status, info.ErrorDesc)
	}
	if cerr != nil {
		return n, fmt.Errorf("qemu: save state: %w", cerr)
	}
	return n, nil
}

// waitMigration polls query-migrate until the migration has ended (completed, failed or cancelled).
func (vm *VM) waitMigration(ctx context.Context, what string) (migrationInfo, error) {
	tick := time.NewTicker(migrationPoll)
	defer tick.Stop()
	for {
		var info migrationInfo
		if err := vm.qmp.Execute(ctx, "query-migrate", nil, &info); err != nil {
			if errors.Is(err, ErrQMPClosed) {
				// QEMU exits when it cannot load a state; what it said is the reason.
				select {
				case <-vm.proc.exited:
					return info, fmt.Errorf("qemu: %s: QEMU exited (%w)%s", what, vm.proc.exitErr(), vm.stderrSuffix())
				case <-time.After(time.Second):
				}
			}
			return info, fmt.Errorf("qemu: %s: %w", what, err)
		}
		switch info.Status {
		case "completed", "failed", "cancelled":
			return info, nil
		}
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("qemu: %s: %w", what, ctx.Err())
		case <-vm.proc.exited:
			return info, fmt.Errorf("qemu: %s: QEMU exited (%w)%s", what, vm.proc.exitErr(), vm.stderrSuffix())
		case <-tick.C:
		}
	}
}

// Restore feeds a saved state to a VM started with Options.Incoming: it copies r into the pipe's write
// end, which it closes, and waits until QEMU has loaded the state and r is exhausted. An error from r's last
// read (a digest that does not match) fails the restore with the VM still paused, and the caller kills it.
// The VM stays paused; Continue runs it.
func (vm *VM) Restore(ctx context.Context, feed *os.File, r io.Reader) error {
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(feed, r)
		if err != nil {
			err = fmt.Errorf("read the saved state: %w", err)
		}
		copied <- errors.Join(err, feed.Close())
	}()
	info, err := vm.waitMigration(ctx, "restore state")
	if err != nil {
		_ = feed.Close()
		return errors.Join(err, <-copied)
	}
	// The reader's own checks (the stored digest) end with the last bytes, after QEMU may have read all it
	// wanted: wait for them before the guest may run.
	if cerr := <-copied; cerr != nil {
		return fmt.Errorf("qemu: restore state: %w", cerr)
	}
	if info.Status != "completed" {
		return fmt.Errorf("qemu: restore state: migration %s: %s%s", info.Status, info.ErrorDesc, vm.stderrSuffix())
	}
	return nil
}

// versions caches Version's answers by binary: a build asks once per session.
var versions sync.Map // binary -> string

// Version returns the first line of "BINARY --version" ("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)");
// "" binary means qemu-system-x86_64. A saved state loads only into the QEMU that wrote it, to be sure.
func Version(ctx context.Context, binary string) (string, error) {
	if binary == "" {
		binary = "qemu-system-x86_64"
	}
	if v, ok := versions.Load(binary); ok {
		return v.(string), nil
	}
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("qemu: %s --version: %w", binary, err)
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	versions.Store(binary, v)
	return v, nil
}

// StateFingerprint identifies the virtual hardware of o for a saved state: QEMU's version and the command
// line with what differs between two runs of the same machine (files, sockets, the SSH port, the seed's
// path) replaced by fixed names. A state is only loaded into a VM with the same fingerprint; QEMU would
// refuse some differences with an obscure error and silently accept others (another -cpu model).
func StateFingerprint(ctx context.Context, o Options) (string, error) {
	v, err := Version(ctx, o.Binary)
	if err != nil {
		return "", err
	}
	o.Disk, o.StateDir, o.NetSocket, o.QMPSocket, o.SSHPort, o.Incoming = "/disk", "/state", "/net.sock", "/qmp.sock", 22, nil
	argv, err := Command(o)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", v)
	for _, a := range argv[1:] {
		fmt.Fprintf(h, "%s\x00", a)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

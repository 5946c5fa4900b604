package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Status asks QEMU whether the guest runs (QMP query-status).
func (vm *VM) Status(ctx context.Context) (Status, error) {
	return vm.qmp.QueryStatus(ctx)
}

// Shutdown powers the guest off in order: it presses the ACPI power button (QMP system_powerdown) and
// waits up to timeout for QEMU to exit, then kills QEMU. It returns the SHUTDOWN event's reason
// ("guest-shutdown" when the guest obeyed). A VM that has already exited, for example after a poweroff
// inside the guest, returns its recorded reason at once.
func (vm *VM) Shutdown(ctx context.Context, timeout time.Duration) (string, error) {
	select {
	case <-vm.proc.exited:
		return vm.exitReason()
	default:
	}
	if err := vm.qmp.SystemPowerdown(ctx); err != nil {
		select {
		case <-vm.proc.exited: // it was already on its way out
			return vm.exitReason()
		default:
		}
		vm.Kill()
		<-vm.proc.exited
		return "", fmt.Errorf("qemu: power down: %w; killed QEMU", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-vm.proc.exited:
		return vm.exitReason()
	case <-t.C:
		vm.Kill()
		<-vm.proc.exited
		return "", fmt.Errorf("qemu: the guest did not power off within %s of system_powerdown; killed QEMU\nlast lines of the serial console:\n%s",
			timeout, vm.Tail(20))
	case <-ctx.Done():
		vm.Kill()
		<-vm.proc.exited
		return "", fmt.Errorf("qemu: power down: %w; killed QEMU", ctx.Err())
	}
}

// exitReason returns the SHUTDOWN reason of an exited VM and Wait's error.
func (vm *VM) exitReason() (string, error) {
	err := vm.Wait()
	if s, ok := vm.ShutdownEvent(); ok {
		return s.Reason, err
	}
	if err == nil {
		err = fmt.Errorf("qemu: exited without a SHUTDOWN event")
	}
	return "", err
}

// Quit ends QEMU at once through QMP and waits for it to exit. The guest's unsynced writes are lost.
func (vm *VM) Quit(ctx context.Context) error {
	if err := vm.qmp.Quit(ctx); err != nil {
		return err
	}
	select {
	case <-vm.proc.exited:
		return nil
	case <-ctx.Done():
		vm.Kill()
		return fmt.Errorf("qemu: quit: %w; killed QEMU", ctx.Err())
	}
}

// Snapshot makes the file the VM writes to now a finished, read-only layer: QEMU stacks the qcow2 overlay
// at overlay on the current active image and sends all further writes there (QMP BlockdevSnapshot). It
// returns the path of the finished layer.
//
// Sync the guest's file systems first (run "sync" in the guest): the layer holds what the guest had
// written to the virtual disk at this moment, like a disk after a power cut, which a journaling file system
// replays on the next boot.
//
// The overlay must exist (create it with CreateOverlayUnchecked): QEMU opens it without its backing file
// and stacks it on the active image, so the backing field stays as written. A caller that
// moves the finished layer elsewhere therefore writes the layer's future path there, and QEMU, which
// keeps the layer open, never needs the old one again.
//
// The new overlay gets the drive's discard=unmap, detect-zeroes=unmap and cache mode (BlockdevSnapshot).
func (vm *VM) Snapshot(ctx context.Context, overlay string) (string, error) {
	abs, err := filepath.Abs(overlay)
	if err != nil {
		return "", fmt.Errorf("qemu: snapshot: %w", err)
	}
	if _, err := os.Lstat(abs); err != nil {
		return "", fmt.Errorf("qemu: snapshot: the overlay must exist: %w", err)
	}
	vm.mu.Lock()
	vm.layers++
	node := fmt.Sprintf("imgform-layer%d", vm.layers)
	vm.mu.Unlock()
	if err := vm.qmp.BlockdevSnapshot(ctx, DiskID, Overlay{File: abs, NodeName: node, Cache: vm.opts.DiskCache}); err != nil {
		return "", fmt.Errorf("qemu: snapshot to %s: %w", abs, err)
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	layer := vm.active
	vm.active = abs
	return layer, nil
}

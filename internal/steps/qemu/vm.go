package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gitlab.com/imgform/imgform/internal/debuglog"
	"gitlab.com/imgform/imgform/internal/fsutil"
)

// startAttempts bounds the retries when the SSH port Start picked was taken by someone else in between.
const startAttempts = 5

// qmpReadyTimeout bounds how long QEMU may take to set up its devices and answer on QMP. This does not
// include the guest's boot, which has not started yet; a few seconds are normal.
const qmpReadyTimeout = 60 * time.Second

// hostfwdError is what QEMU says when the forwarded port is taken.
const hostfwdError = "Could not set up host forwarding rule"

// VM is a running QEMU.
type VM struct {
	opts   Options
	paths  paths
	port   int
	proc   *process
	passt  *process // the guest's network for NetworkIsolated; nil for NetworkUser
	qmp    *QMP
	stderr *fsutil.TailBuffer
	stop   func() bool // stops the context watcher
	tmpDir string      // short folder for the QMP socket, removed on exit
	netDir string      // passt's folder for its socket (passt.go), removed on exit

	eventsDone chan struct{}
	mu         sync.Mutex
	shutdown   *ShutdownEvent
	events     []Event
	active     string // the disk image the VM writes to now
	layers     int    // snapshots taken, for unique node names
}

// Start boots a VM. It returns once QEMU has set up its devices and answers on QMP, long before the guest
// has booted. QEMU runs in its own process group and never outlives imgform: when ctx ends or Kill is
// called the group gets SIGKILL, and on Linux the kernel kills QEMU when imgform dies (see sysProcAttr).
// For UEFI the variable store template is copied into the state folder.
func Start(ctx context.Context, o Options) (*VM, error) {
	if o.Incoming != nil {
		// QEMU has its own copy once started; ours would keep the pipe open after QEMU is gone.
		defer o.Incoming.Close()
	}
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if !fileExists(o.Disk) {
		return nil, fmt.Errorf("qemu: disk %s does not exist", o.Disk)
	}
	vm := &VM{opts: o, eventsDone: make(chan struct{})}
	if vm.active, err = absPath(o.Disk); err != nil {
		return nil, err
	}
	if err := vm.prepareState(); err != nil {
		return nil, errors.Join(err, vm.removeTmp())
	}
	for attempt := 1; ; attempt++ {
		err = vm.start(ctx)
		if err == nil {
			break
		}
		if o.SSHPort != 0 || attempt == startAttempts || !errors.Is(err, errPortTaken) {
			return nil, errors.Join(err, vm.removeTmp())
		}
	}
	go vm.watchEvents()
	vm.stop = context.AfterFunc(ctx, vm.Kill)
	go func() {
		<-vm.proc.exited
		vm.stop()
		vm.stopPasst()
		// QEMU closed its end; these only release ours and cannot lose anything worth reporting.
		_ = vm.qmp.Close()
		_ = vm.removeTmp()
	}()
	return vm, nil
}

// prepareState checks the state folder, clears files of an earlier run and copies the UEFI variables.
func (vm *VM) prepareState() error {
	fi, err := os.Stat(vm.opts.StateDir)
	if err != nil {
		return fmt.Errorf("qemu: state folder: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("qemu: state folder %s is not a folder", vm.opts.StateDir)
	}
	if vm.opts.Network == NetworkIsolated && vm.opts.NetSocket == "" {
		if vm.netDir, err = passtSocketDir(); err != nil {
			return err
		}
		vm.opts.NetSocket = filepath.Join(vm.netDir, PasstSocketName)
	}
	p, err := statePaths(vm.opts)
	if err != nil && vm.opts.QMPSocket == "" {
		// The state folder's path is too long for a unix socket: use a short folder of its own.
		if vm.tmpDir, err = os.MkdirTemp("", "imgform-qmp-"); err != nil {
			return fmt.Errorf("qemu: %w", err)
		}
		vm.opts.QMPSocket = filepath.Join(vm.tmpDir, QMPSocketName)
		p, err = statePaths(vm.opts)
	}
	if err != nil {
		return err
	}
	vm.paths = p
	for _, f := range []string{p.qmp, p.pid} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("qemu: remove stale %w", err)
		}
	}
	if vm.opts.Firmware == FirmwareUEFI {
		if !fileExists(vm.opts.OVMFCode) {
			return fmt.Errorf("qemu: UEFI firmware %s not found (Debian: apt-get install ovmf)", vm.opts.OVMFCode)
		}
		if err := copyFile(vm.opts.OVMFVars, p.vars); err != nil {
			return fmt.Errorf("qemu: UEFI variables (Debian: apt-get install ovmf): %w", err)
		}
	}
	return nil
}

// errPortTaken says that someone else took the SSH port Start picked before QEMU or passt bound it.
var errPortTaken = errors.New("the SSH port was taken")

// start runs QEMU (and passt before it) once and waits until it answers on QMP.
func (vm *VM) start(ctx context.Context) error {
	o := vm.opts
	vm.stderr = fsutil.NewTailBuffer(64 * 1024)
	vm.port = o.SSHPort
	if vm.port == 0 {
		var err error
		if vm.port, err = pickPort(); err != nil {
			return err
		}
		o.SSHPort = vm.port
	}
	argv, err := Command(o)
	if err != nil {
		return err
	}
	if o.Network == NetworkIsolated {
		var out *fsutil.TailBuffer
		if vm.passt, out, err = vm.startPasst(ctx, vm.port); err != nil {
			if out != nil && strings.Contains(out.String(), passtPortTaken) {
				return fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		}
	}
	debuglog.Debugf("qemu", "starting %s", quoteArgs(argv))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = vm.opts.StateDir
	cmd.Stdout, cmd.Stderr = vm.stderr, vm.stderr
	if o.Incoming != nil {
		cmd.ExtraFiles = []*os.File{o.Incoming} // fd 3, incomingFD
	}
	if vm.proc, err = startProcess(cmd); err != nil {
		vm.stopPasst()
		return fmt.Errorf("qemu: start %s: %w", argv[0], err)
	}
	rctx, cancel := context.WithTimeout(ctx, qmpReadyTimeout)
	defer cancel()
	if vm.qmp, err = vm.connectQMP(rctx); err != nil {
		vm.proc.kill()
		<-vm.proc.exited
		vm.stopPasst()
		err = fmt.Errorf("qemu: %w%s", err, vm.stderrSuffix())
		if strings.Contains(vm.stderr.String(), hostfwdError) {
			err = fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return err
	}
	return nil
}

// stopPasst ends passt, if it runs, and waits for it. passt exits by itself once QEMU is gone; this covers
// a QEMU that never connected.
func (vm *VM) stopPasst() {
	if vm.passt != nil {
		vm.passt.kill()
		<-vm.passt.exited
	}
}

// connectQMP waits for the QMP socket, connects and negotiates, or reports that QEMU exited first. QEMU
// answers on QMP only from its main loop, after it has opened the disks and set up the network forward.
func (vm *VM) connectQMP(ctx context.Context) (*QMP, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		q, err := DialQMP(ctx, vm.paths.qmp)
		if err == nil {
			return q, nil
		}
		select {
		case <-vm.proc.exited:
			return nil, fmt.Errorf("QEMU exited at start (%w)", vm.proc.exitErr())
		case <-ctx.Done():
			return nil, fmt.Errorf("no QMP answer on %s: %w (last error: %w)", vm.paths.qmp, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// watchEvents records the events QEMU sends until the QMP connection ends.
func (vm *VM) watchEvents() {
	defer close(vm.eventsDone)
	for ev := range vm.qmp.Events() {
		vm.mu.Lock()
		vm.events = append(vm.events, ev)
		if s, ok := ev.Shutdown(); ok {
			vm.shutdown = &s
		}
		vm.mu.Unlock()
	}
}

// Kill ends QEMU and its process group with SIGKILL at once. It is safe to call more than once and after
// QEMU has exited.
func (vm *VM) Kill() { vm.proc.kill() }

// Exited is closed when QEMU has exited.
func (vm *VM) Exited() <-chan struct{} { return vm.proc.exited }

// Wait waits for QEMU to exit. It returns nil when QEMU exited with status 0 (the guest powered off), and
// otherwise an error with the end of QEMU's standard error.
func (vm *VM) Wait() error {
	<-vm.proc.exited
	<-vm.eventsDone
	killed, err := vm.proc.result()
	switch {
	case killed:
		return fmt.Errorf("qemu: killed%s", vm.stderrSuffix())
	case err != nil:
		return fmt.Errorf("qemu: %w%s", err, vm.stderrSuffix())
	}
	return nil
}

// ShutdownEvent returns the SHUTDOWN event QEMU sent, if any. Once QEMU has exited and Wait has returned it
// is final.
func (vm *VM) ShutdownEvent() (ShutdownEvent, bool) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.shutdown == nil {
		return ShutdownEvent{}, false
	}
	return *vm.shutdown, true
}

// Events returns the QMP events seen so far.
func (vm *VM) Events() []Event {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Event(nil), vm.events...)
}

// QMP returns the VM's QMP client for commands this package has no method for. Do not close it.
func (vm *VM) QMP() *QMP { return vm.qmp }

// PID returns QEMU's process id, which is also its process group id.
func (vm *VM) PID() int { return vm.proc.pid }

// SSHPort returns the port on 127.0.0.1 that reaches the guest's SSH server.
func (vm *VM) SSHPort() int { return vm.port }

// SSHAddr returns "127.0.0.1:port" for SSHPort.
func (vm *VM) SSHAddr() string { return net.JoinHostPort("127.0.0.1", fmt.Sprint(vm.port)) }

// SerialLog returns the path of the file that receives the guest's serial console.
func (vm *VM) SerialLog() string { return vm.paths.serial }

// PIDFile returns the path of the pid file QEMU writes.
func (vm *VM) PIDFile() string { return vm.paths.pid }

// ActiveDisk returns the image the VM writes to now: Options.Disk, or the overlay of the last Snapshot.
func (vm *VM) ActiveDisk() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.active
}

func (vm *VM) stderrSuffix() string {
	s := strings.TrimSpace(vm.stderr.String())
	if s == "" {
		return ""
	}
	return "\nQEMU said:\n" + s
}

func (vm *VM) removeTmp() error {
	var errs []error
	for _, d := range []string{vm.tmpDir, vm.netDir} {
		if d == "" {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("qemu: %w", err))
		}
	}
	return errors.Join(errs...)
}

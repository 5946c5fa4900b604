package qemu_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

func blankOptions(t *testing.T) qemu.Options {
	t.Helper()
	needQEMU(t)
	dir := t.TempDir()
	return qemu.Options{Accelerator: qemu.AccelTCG, Disk: blankDisk(t, dir), StateDir: dir, Memory: 64 << 20, CPUs: 1}
}

func TestStartFails(t *testing.T) {
	cases := map[string]struct {
		opts func(o *qemu.Options)
		want []string
	}{
		"bad option shows QEMU's stderr": {
			opts: func(o *qemu.Options) { o.ExtraArgs = []string{"-bogus-option"} },
			want: []string{"QEMU exited at start", "QEMU said:", "-bogus-option: invalid option"},
		},
		"bad device property": {
			opts: func(o *qemu.Options) { o.ExtraArgs = []string{"-device", "virtio-blk-pci,drive=nope"} },
			want: []string{"QEMU said:", "nope"},
		},
		"missing binary": {
			opts: func(o *qemu.Options) { o.Binary = "qemu-system-none" },
			want: []string{"start qemu-system-none", "executable file not found"},
		},
		"missing disk": {
			opts: func(o *qemu.Options) { o.Disk += ".missing" },
			want: []string{"does not exist"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := blankOptions(t)
			tc.opts(&o)
			vm, err := qemu.Start(context.Background(), o)
			if err == nil {
				vm.Kill()
				t.Fatal("Start succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestExplicitPortTaken(t *testing.T) {
	o := blankOptions(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	o.SSHPort = l.Addr().(*net.TCPAddr).Port
	vm, err := qemu.Start(context.Background(), o)
	if err == nil {
		vm.Kill()
		t.Fatal("Start succeeded on a taken port")
	}
	if !strings.Contains(err.Error(), "Failed to bind any port") || !strings.Contains(err.Error(), "was taken") {
		t.Errorf("error does not show passt's message: %v", err)
	}
	o.Network = qemu.NetworkUser
	if vm, err = qemu.Start(context.Background(), o); err == nil {
		vm.Kill()
		t.Fatal("Start succeeded on a taken port")
	}
	if !strings.Contains(err.Error(), "Could not set up host forwarding rule") || !strings.Contains(err.Error(), "was taken") {
		t.Errorf("error does not show QEMU's hostfwd message: %v", err)
	}
}

// TestCancelKillsProcessGroup checks that ending Start's context kills QEMU and its whole process group,
// and that no process with the VM's pid file is left.
func TestCancelKillsProcessGroup(t *testing.T) {
	o := blankOptions(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	vm, err := qemu.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	pid := vm.PID()
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		t.Errorf("QEMU's process group is %d (%v), want its own, %d", pgid, err, pid)
	}
	b, err := os.ReadFile(vm.PIDFile())
	if err != nil || strings.TrimSpace(string(b)) != strings.TrimSpace(itoa(pid)) {
		t.Errorf("pid file %s holds %q (%v), want %d", vm.PIDFile(), b, err, pid)
	}
	if st, err := vm.Status(ctx); err != nil || !st.Running {
		t.Errorf("query-status = %+v, %v; want running", st, err)
	}
	cancel()
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	select {
	case <-vm.Exited():
	case <-wctx.Done():
		t.Fatal("QEMU still runs after the context was cancelled")
	}
	if err := vm.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Wait = %v, want a kill", err)
	}
	if !processGone(pid) || !groupGone(t, pid) {
		t.Errorf("QEMU (pid %d) or its process group is still alive", pid)
	}
	if pids := qemuWithArg(t, vm.PIDFile()); len(pids) > 0 {
		t.Errorf("processes with the pid file %s still run: %v", vm.PIDFile(), pids)
	}
}

// TestQEMUDiesWithImgform kills a stand-in for imgform with SIGKILL and checks that its QEMU dies too
// (Pdeathsig), and passt with it (its guard), although no code of the killed process ran.
func TestQEMUDiesWithImgform(t *testing.T) {
	o := blankOptions(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperEnv+"_DISK="+o.Disk, helperEnv+"_STATE="+o.StateDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid, err := readPID(bufio.NewScanner(out))
	if err != nil {
		_ = cmd.Process.Kill() // the helper failed already; its error is what matters
		t.Fatalf("helper: %v", err)
	}
	if processGone(pid) {
		t.Fatalf("QEMU %d is not running before the kill", pid)
	}
	passtLog := filepath.Join(o.StateDir, qemu.PasstLogName)
	if len(qemuWithArg(t, passtLog)) == 0 {
		t.Fatalf("no passt with --log-file %s runs before the kill", passtLog)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // "signal: killed", as intended
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eventually(ctx, func() bool { return processGone(pid) }); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL) // do not leave it behind for the next test
		t.Fatalf("QEMU %d outlived the killed imgform: %v", pid, err)
	}
	if err := eventually(ctx, func() bool { return len(qemuWithArg(t, passtLog)) == 0 }); err != nil {
		t.Fatalf("passt %v outlived the killed imgform: %v", qemuWithArg(t, passtLog), err)
	}
}

func TestKillAndQuit(t *testing.T) {
	cases := map[string]struct {
		stop       func(ctx context.Context, vm *qemu.VM) error
		wantReason string
		wantErr    bool
	}{
		"kill": {
			stop:    func(_ context.Context, vm *qemu.VM) error { vm.Kill(); vm.Kill(); return nil },
			wantErr: true,
		},
		"qmp quit": {
			stop:       func(ctx context.Context, vm *qemu.VM) error { return vm.Quit(ctx) },
			wantReason: "host-qmp-quit",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := blankOptions(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			vm, err := qemu.Start(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Kill()
			if err := tc.stop(ctx, vm); err != nil {
				t.Fatal(err)
			}
			err = vm.Wait()
			if (err != nil) != tc.wantErr {
				t.Errorf("Wait = %v, want error %v", err, tc.wantErr)
			}
			ev, ok := vm.ShutdownEvent()
			if tc.wantReason != "" && (!ok || ev.Reason != tc.wantReason) {
				t.Errorf("SHUTDOWN event %+v (%v), want reason %q", ev, ok, tc.wantReason)
			}
			vm.Kill() // after exit: must be harmless
		})
	}
}

// TestUEFIFirmwareStarts boots OVMF from the pflash arguments and waits for its boot manager on the
// serial console (the blank disk has nothing to boot, which it then says).
func TestUEFIFirmwareStarts(t *testing.T) {
	o := blankOptions(t)
	if _, err := os.Stat(qemu.DefaultOVMFCode); err != nil {
		t.Fatalf("%v: run scripts/install-deps.sh (as root) to install ovmf", err)
	}
	o.Firmware = qemu.FirmwareUEFI
	o.Memory = 256 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm, err := qemu.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	if fi, err := os.Stat(o.StateDir + "/" + qemu.OVMFVarsName); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("per-VM UEFI variables: %v, %v", fi, err)
	}
	err = eventually(ctx, func() bool {
		b, _ := os.ReadFile(vm.SerialLog()) // not there yet is fine: poll again
		return strings.Contains(string(b), "BdsDxe")
	})
	if err != nil {
		t.Fatalf("no UEFI boot manager output on the serial console: %v\n%s", err, vm.Tail(20))
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

package qemu

import (
	"context"
	"net"
	"os/exec"
	"testing"
	"time"
)

// TestStartRetriesTakenPort makes the race between picking a free port and QEMU binding it happen: the
// first port handed out is taken. Start must see QEMU's "Could not set up host forwarding rule", pick
// another port and succeed.
func TestStartRetriesTakenPort(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 not found: run scripts/install-deps.sh (as root) to install QEMU")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}()
	taken := l.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return taken, nil
		}
		return freePort()
	}
	defer func() { pickPort = freePort }()

	dir := t.TempDir()
	disk := dir + "/blank.qcow2"
	if out, err := exec.Command(QemuImg, "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := Start(ctx, Options{Accelerator: AccelTCG, Disk: disk, StateDir: dir, Memory: 64 << 20, CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		vm.Kill()
		<-vm.Exited()
	}()
	if calls != 2 || vm.SSHPort() == taken || vm.SSHPort() == 0 {
		t.Errorf("port %d after %d picks; want a second pick, not the taken %d", vm.SSHPort(), calls, taken)
	}
	// The forward answers on the new port (QEMU accepts at once; the guest has no sshd, which is fine).
	c, err := net.DialTimeout("tcp", vm.SSHAddr(), 10*time.Second)
	if err != nil {
		t.Fatalf("the forwarded port does not accept: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Error(err)
	}
}

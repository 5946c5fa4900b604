package qemu_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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

// helperEnv makes the test binary act as a stand-in for imgform: start QEMU, print its pid, then block
// until killed. TestQEMUDiesWithImgform kills it with SIGKILL, which no cleanup code survives.
const helperEnv = "IMGFORM_QEMU_TEST_HELPER"

func runHelper() int {
	disk, state := os.Getenv(helperEnv+"_DISK"), os.Getenv(helperEnv+"_STATE")
	vm, err := qemu.Start(context.Background(), qemu.Options{Accelerator: qemu.AccelTCG, Disk: disk, StateDir: state, Memory: 64 << 20, CPUs: 1})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("pid", vm.PID())
	<-vm.Exited()
	return 2
}

// blankDisk creates an empty qcow2 disk: QEMU runs its BIOS and finds nothing to boot, which is all the
// process tests need, without the test image.
func blankDisk(t *testing.T, dir string) string {
	t.Helper()
	disk := filepath.Join(dir, "blank.qcow2")
	if out, err := exec.Command(qemu.QemuImg, "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	return disk
}

// needQEMU fails, never skips, when QEMU is missing.
func needQEMU(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"qemu-system-x86_64", qemu.QemuImg} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: run scripts/install-deps.sh (as root) to install QEMU", bin)
		}
	}
}

// processGone reports whether pid no longer runs (absent, or a zombie waiting for init to reap it).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses, which may itself hold spaces or parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] == 'Z'
}

// groupGone reports whether no live process is left in process group pgid.
func groupGone(t *testing.T, pgid int) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err == nil && g == pgid && !processGone(pid) {
			return false
		}
	}
	return true
}

// qemuWithArg returns the pids of live processes whose command line contains arg.
func qemuWithArg(t *testing.T, arg string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), arg) && !processGone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// eventually polls cond until it holds or ctx ends.
func eventually(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

var errNoPID = errors.New("helper printed no pid")

// readPID reads "pid N" from the helper's output.
func readPID(sc *bufio.Scanner) (int, error) {
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "pid "); ok {
			return strconv.Atoi(rest)
		}
		if strings.HasPrefix(line, "error:") {
			return 0, errors.New(line)
		}
	}
	return 0, errNoPID
}

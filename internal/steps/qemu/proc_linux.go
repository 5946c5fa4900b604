//go:build linux

package qemu

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts QEMU in a process group of its own, so that a terminal's Ctrl-C reaches only imgform
// (which then stops QEMU in order) and the whole group can be killed at once, and asks the kernel to
// SIGKILL QEMU when its parent dies, even by kill -9, which no cleanup code survives.
//
// Pdeathsig has a catch in Go: the kernel sends it when the *thread* that forked the child exits, not the
// process. The Go runtime ends a thread when a goroutine that locked it exits without unlocking, so a fork
// from an arbitrary goroutine could lose QEMU at a random later moment. startProcess therefore forks from a
// goroutine locked to its thread that keeps the lock until QEMU has exited.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// guardProcAttr is sysProcAttr with SIGTERM as the parent-death signal, for passt's guard (passt.go): the
// guard must live long enough to kill passt, which the kernel no longer signals once passt has dropped
// its privileges.
func guardProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// residentBytes is the resident memory of process pid (VmRSS in /proc/pid/status).
func residentBytes(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/%d/status: VmRSS %q: %w", pid, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

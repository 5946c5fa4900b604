//go:build !linux

package qemu

import (
	"errors"
	"syscall"
)

// sysProcAttr puts QEMU in a process group of its own (see proc_linux.go; there is no Pdeathsig here, so a
// QEMU can outlive an imgform killed with kill -9).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// guardProcAttr is sysProcAttr (see proc_linux.go).
func guardProcAttr() *syscall.SysProcAttr { return sysProcAttr() }

// residentBytes needs Linux's /proc.
func residentBytes(pid int) (int64, error) { return 0, errors.ErrUnsupported }

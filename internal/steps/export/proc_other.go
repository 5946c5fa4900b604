//go:build !linux

package export

import "syscall"

// procAttr puts the child in its own process group; only Linux has a parent-death signal.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

package export

import "syscall"

// procAttr puts the child in its own process group and asks the kernel to SIGKILL it if the thread that
// started it goes away, which covers imgform being killed with SIGKILL, where no cleanup code runs. Go
// only ends an OS thread when a goroutine exits while locked to it, which this package never does, so
// the death signal does not fire early.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

package qemu

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// process is a started QEMU and its process group.
type process struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{} // closed once QEMU has exited and been reaped

	mu     sync.Mutex
	reaped bool // the pid may belong to another process now: signal nothing
	killed bool
	err    error // cmd.Wait's result
}

// startProcess starts cmd and waits for it in a goroutine locked to the OS thread that forked it, which
// keeps Pdeathsig armed for QEMU's whole life (see sysProcAttr). A SysProcAttr the caller set is kept.
func startProcess(cmd *exec.Cmd) (*process, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = sysProcAttr()
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		p.wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// wait waits for QEMU to exit without reaping it, kills what is left of its process group while the
// zombie still holds the group id (so the id cannot name another group yet), then reaps it.
func (p *process) wait() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	p.mu.Lock()
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // ESRCH when QEMU left no helper behind, the usual case
	p.reaped = true
	p.mu.Unlock()
	err := p.cmd.Wait()
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	close(p.exited)
}

// kill sends SIGKILL to QEMU's whole process group, unless QEMU has already been reaped.
func (p *process) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return
	}
	p.killed = true
	_ = syscall.Kill(-p.pid, syscall.SIGKILL) // ESRCH: it exited on its own meanwhile
}

// errExitedZero stands for cmd.Wait's nil error in messages about a QEMU that should not have exited.
var errExitedZero = errors.New("exit status 0")

// exitErr is cmd.Wait's error, or errExitedZero for a clean exit, for a message about an exit that came
// too early; valid once exited is closed.
func (p *process) exitErr() error {
	if _, err := p.result(); err != nil {
		return err
	}
	return errExitedZero
}

// result returns whether kill was used and cmd.Wait's error; valid once exited is closed.
func (p *process) result() (killed bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed, p.err
}

package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// ToolError is a failed external command (qemu-img) with what it printed on stderr, which is where
// qemu-img explains itself ("Could not open ...", "error while writing ...").
type ToolError struct {
	Args   []string // the program and its arguments
	Err    error    // from exec: the exit status, or why it could not start
	Stderr string   // the end of its stderr, trimmed
}

func (e *ToolError) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Args, " "), e.Err)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

func (e *ToolError) Unwrap() error { return e.Err }

// stderrLimit bounds how much stderr a ToolError keeps: the useful lines are the last ones, and a tool
// that loops on a warning must not fill the memory.
const stderrLimit = 16 << 10

// killGrace is how long Wait may block on pipes after the process group was killed. Nothing we start
// should hold them longer (the whole group gets SIGKILL), so this only guards against a child that
// escaped into another group with our pipes.
const killGrace = 10 * time.Second

// runTool runs a program in its own process group and waits for it. stdout receives its standard output
// as it comes (nil discards it); stderr is kept for the error.
//
// The process group is what makes cancellation complete: when ctx ends, the whole group gets SIGKILL,
// so a helper the tool may have forked dies with it instead of living on as an orphan, and Ctrl-C in
// the terminal reaches only imgform, which then cancels ctx and cleans up in order. On Linux the child
// also gets SIGKILL if imgform itself dies without cleaning up (see procAttr).
func runTool(ctx context.Context, stdout io.Writer, name string, args ...string) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = stdout
	stderr := fsutil.NewTailBuffer(stderrLimit)
	cmd.Stderr = stderr
	cmd.SysProcAttr = procAttr()
	// Cancel runs only while the process has not been waited for, so its PID, which is also the group
	// ID, cannot have been reused: the kill reaches our group and nothing else.
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = killGrace
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s stopped: %w", name, context.Cause(ctx))
	}
	if err != nil {
		return &ToolError{Args: append([]string{name}, args...), Err: err, Stderr: strings.TrimSpace(stderr.String())}
	}
	return nil
}

// killGroup sends SIGKILL to the process group whose leader is pid.
func killGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

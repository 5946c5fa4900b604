package fsutil

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// The test binary re-executes itself with FSUTIL_TEST_HELPER set to play another imgform process that
// writes a file atomically and is killed in the middle. It prints a line once it has written, then waits for
// stdin to close, so the test synchronises on that line, never on a sleep.
const (
	envHelper = "FSUTIL_TEST_HELPER"
	envPath   = "FSUTIL_TEST_PATH"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envHelper); mode != "" {
		if err := runHelper(mode, os.Getenv(envPath)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelper(mode, path string) error {
	switch mode {
	case "write":
		f, err := CreateAtomic(path, 0o644)
		if err != nil {
			return err
		}
		if _, err := f.Write([]byte("half a file")); err != nil {
			return err
		}
		fmt.Println("written")
		if _, err := io.Copy(io.Discard, os.Stdin); err != nil { // the parent kills us here, or lets us commit
			return err
		}
		return f.Commit()
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// helper is a running helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Scanner
	waited bool
}

func startHelper(t *testing.T, mode, path string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"="+mode, envPath+"="+path)
	cmd.Stderr = os.Stderr
	h := &helper{cmd: cmd}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.stdout = bufio.NewScanner(stdout)
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !h.waited {
			_ = h.cmd.Process.Kill() // best effort: the test already failed
			_ = h.cmd.Wait()
		}
	})
	return h
}

// expect waits for the helper to print line.
func (h *helper) expect(t *testing.T, line string) {
	t.Helper()
	if !h.stdout.Scan() {
		t.Fatalf("helper %d ended before saying %q: %v", h.cmd.Process.Pid, line, h.stdout.Err())
	}
	if got := h.stdout.Text(); got != line {
		t.Fatalf("helper %d said %q, want %q", h.cmd.Process.Pid, got, line)
	}
}

// kill ends the helper the hard way, as a crash or the OOM killer would: no deferred code runs.
func (h *helper) kill(t *testing.T) {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := h.cmd.Wait()
	h.waited = true
	if ws, ok := h.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("helper was not killed: %v", err)
	}
}

// finish lets the helper end normally and checks that it succeeded.
func (h *helper) finish(t *testing.T) {
	t.Helper()
	if err := h.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	err := h.cmd.Wait()
	h.waited = true
	if err != nil {
		t.Fatalf("helper %d: %v", h.cmd.Process.Pid, err)
	}
}

package fsutil

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
)

// The test binary re-executes itself with FSUTIL_TEST_HELPER set to play another imgform process that
// writes a file atomically. It prints "written" once it has written, then waits for stdin to close before
// it commits, so the test synchronises on that line, never on a sleep, and can kill it in between.
const (
	envHelper = "FSUTIL_TEST_HELPER"
	envPath   = "FSUTIL_TEST_PATH"
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) != "" {
		if err := runWriter(os.Getenv(envPath)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runWriter(path string) error {
	f, err := CreateAtomic(path, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte("half a file")); err != nil {
		return err
	}
	fmt.Println("written")
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
		return err
	}
	return f.Commit()
}

// startWriter starts a helper process that writes path with CreateAtomic and returns once it has written.
// end(true) lets it commit; end(false) kills it with SIGKILL, as a crash or the OOM killer would, so no
// deferred Abort runs.
func startWriter(t *testing.T, path string) (end func(commit bool)) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=1", envPath+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ended := false
	t.Cleanup(func() {
		if !ended {
			_ = cmd.Process.Kill() // best effort: the test already failed
			_ = cmd.Wait()
		}
	})
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "written\n" {
		t.Fatalf("helper %d said %q (%v), want \"written\"", cmd.Process.Pid, line, err)
	}
	return func(commit bool) {
		t.Helper()
		ended = true
		if !commit {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err == nil {
				t.Fatalf("helper %d was not killed", cmd.Process.Pid)
			}
			return
		}
		if err := stdin.Close(); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v", cmd.Process.Pid, err)
		}
	}
}

package export

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRunToolKillsProcessGroup cancels a shell that started a background child: both must die, the
// child too although runTool never saw it.
func TestRunToolKillsProcessGroup(t *testing.T) {
	requireTools(t, "sh", "sleep")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pids := make(chan int, 1)
	w := &lineWriter{fn: func(line string) {
		if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil {
			pids <- pid
		}
	}}
	done := make(chan error, 1)
	go func() { done <- runTool(ctx, w, "sh", "-c", "sleep 86400 & echo $!; wait") }()
	var pid int
	select {
	case pid = <-pids:
	case err := <-done:
		t.Fatalf("the shell ended early: %v", err)
	}
	// A pidfd follows this very process, so a PID reused later cannot confuse the check.
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("no pidfd to watch the child: %v", err)
	}
	defer func() {
		if err := unix.Close(pidfd); err != nil {
			t.Error(err)
		}
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("runTool returned %v, want context.Canceled", err)
	}
	// The pidfd becomes readable when the process exits. The timeout only bounds a failing test.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int((30 * time.Second).Milliseconds()))
	if err != nil || n != 1 {
		t.Fatalf("the background child %d outlived the cancel (poll: %d, %v)", pid, n, err)
	}
}

// TestRunToolError checks that a failing tool's error carries its stderr and exit status.
func TestRunToolError(t *testing.T) {
	requireTools(t, "sh")
	err := runTool(context.Background(), nil, "sh", "-c", "echo 'qemu-img: Could not open x' >&2; exit 3")
	var te *ToolError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T), want a *ToolError", err, err)
	}
	if te.Stderr != "qemu-img: Could not open x" {
		t.Errorf("Stderr %q", te.Stderr)
	}
	for _, want := range []string{"exit status 3", "Could not open x", "sh -c"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if err := runTool(context.Background(), nil, "/nonexistent/tool"); err == nil || !strings.Contains(err.Error(), "/nonexistent/tool") {
		t.Errorf("a missing tool gives %v", err)
	}
}

func TestProgressParser(t *testing.T) {
	var got []float64
	p := &progressParser{fn: func(pct float64) { got = append(got, pct) }}
	// Records split across writes, as a pipe delivers them.
	for _, s := range []string{"    (0.00/100%)\r    (5.", "26/100%)\r", "    (100.00/100%)\r\n", "warning: x\n", "(101/100%)\r"} {
		if _, err := p.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	want := []float64{0, 5.26, 100}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got %v, want %v", got, want)
		}
	}
}

func TestMeter(t *testing.T) {
	var calls [][2]int64
	e := &env{progress: func(phase string, done, total int64) { calls = append(calls, [2]int64{done, total}) }}
	const total = 1 * GiB
	m := e.meter(PhaseCompress, total)
	for done := int64(0); done <= total; done += 64 * KiB {
		m.report(done)
	}
	m.report(total)
	if len(calls) < 2 || len(calls) > progressSteps+2 {
		t.Errorf("%d calls for %d reports", len(calls), total/(64*KiB))
	}
	if calls[0] != [2]int64{0, total} || calls[len(calls)-1] != [2]int64{total, total} {
		t.Errorf("first %v, last %v", calls[0], calls[len(calls)-1])
	}
}

// lineWriter calls fn for each complete line written to it.
type lineWriter struct {
	mu  sync.Mutex
	fn  func(string)
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return len(p), nil
		}
		w.fn(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// TestWaitRetryCancel checks that the wait between lock retries ends with ctx, not with its timer.
func TestWaitRetryCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitRetry(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

package state

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Helper processes: the test binary re-executes itself with STATE_TEST_HELPER set to play another imgform
// process (one that holds a lock, builds an object, or dies in the middle of a write). Each helper prints
// one line per milestone on stdout and waits for stdin to close before it finishes, so tests synchronise
// on lines, never on sleeps.
const (
	envHelper = "STATE_TEST_HELPER"
	envDir    = "STATE_TEST_DIR"
	envKey    = "STATE_TEST_KEY"
	envLog    = "STATE_TEST_LOG"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envHelper); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelper(mode string) error {
	ctx := context.Background()
	st, err := Open(os.Getenv(envDir))
	if err != nil {
		return err
	}
	key, err := ParseKey(os.Getenv(envKey))
	if err != nil {
		return err
	}
	waitForParent := func() error {
		_, err := io.Copy(io.Discard, os.Stdin)
		return err
	}
	switch mode {
	case "lock":
		l, err := st.LockKey(ctx, key, LockOptions{Purpose: "apply of image helper"})
		if err != nil {
			return err
		}
		fmt.Println("locked")
		if err := waitForParent(); err != nil {
			return err
		}
		return l.Unlock()
	case "hold":
		h, err := st.Hold(ctx, key)
		if err != nil {
			return err
		}
		fmt.Println("held")
		if err := waitForParent(); err != nil {
			return err
		}
		return h.Release()
	case "crashwrite":
		w, err := st.Begin(key, Info{Kind: "disk"})
		if err != nil {
			return err
		}
		if err := w.WriteFile("disk.qcow2", []byte("half a disk"), 0o644); err != nil {
			return err
		}
		fmt.Println("written")
		return waitForParent() // the parent kills us here
	case "build":
		var once sync.Once // waiting is reported again when the holder changes; the parent wants one line
		opts := LockOptions{Purpose: "apply of image helper", OnEvent: func(e LockEvent) {
			if e.Kind == LockWaiting {
				once.Do(func() { fmt.Println("waiting") })
			}
		}}
		obj, built, err := st.GetOrBuild(ctx, key, Info{Kind: "disk"}, opts, func(_ context.Context, w *Writer) error {
			f, err := os.OpenFile(os.Getenv(envLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(f, "built by %d\n", os.Getpid()); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			return w.WriteFile("disk.qcow2", []byte("the same disk"), 0o644)
		})
		if err != nil {
			return err
		}
		fmt.Printf("done built=%v sha=%s\n", built, obj.SHA256)
		return waitForParent()
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// helper is a running helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *bytes.Buffer
	waited bool
}

func startHelper(t *testing.T, mode, dir string, key Key, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"="+mode, envDir+"="+dir, envKey+"="+key.String())
	cmd.Env = append(cmd.Env, env...)
	h := &helper{cmd: cmd, lines: make(chan string, 16), stderr: &bytes.Buffer{}}
	cmd.Stderr = h.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(func() {
		if !h.waited {
			_ = h.cmd.Process.Kill() // best effort: the test already failed
			_ = h.cmd.Wait()
		}
	})
	return h
}

func (h *helper) pid() int { return h.cmd.Process.Pid }

// expect returns the next line, which must start with prefix.
func (h *helper) expect(t *testing.T, prefix string) string {
	t.Helper()
	line, ok := <-h.lines
	if !ok {
		err := h.cmd.Wait()
		h.waited = true
		t.Fatalf("helper %d ended (%v) before saying %q; stderr:\n%s", h.pid(), err, prefix, h.stderr)
	}
	if !strings.HasPrefix(line, prefix) {
		t.Fatalf("helper %d said %q, want %q...", h.pid(), line, prefix)
	}
	return line
}

// kill ends the helper the hard way, as a crash or the OOM killer would.
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
		t.Fatalf("helper %d: %v; stderr:\n%s", h.pid(), err, h.stderr)
	}
}

// fakeClock is an injected clock that only moves when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testKey derives a key from a name, as the engine derives keys from inputs.
func testKey(name string) Key { return Key(sha256.Sum256([]byte(name))) }

// openStore opens a store in a fresh folder with a fake clock and the store's log in the test log.
func openStore(t *testing.T) (*Store, *fakeClock) {
	t.Helper()
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := newFakeClock()
	st.Now = clock.Now
	st.Logf = t.Logf
	return st, clock
}

// commit stores an object with the given files under key.
func commit(t *testing.T, st *Store, key Key, info Info, files map[string]string) *Object {
	t.Helper()
	w, err := st.Begin(key, info)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := w.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	obj, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

func mustLookup(t *testing.T, st *Store, key Key) *Object {
	t.Helper()
	obj, ok, err := st.Lookup(key)
	if err != nil || !ok {
		t.Fatalf("Lookup(%s) = %v, %v; want a hit", key.Short(), ok, err)
	}
	return obj
}

func mustMiss(t *testing.T, st *Store, key Key) {
	t.Helper()
	if _, ok, err := st.Lookup(key); err != nil || ok {
		t.Fatalf("Lookup(%s) = %v, %v; want a miss", key.Short(), ok, err)
	}
}

const lockEX = syscall.LOCK_EX

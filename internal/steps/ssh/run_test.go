package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// localClient dials the test server, which runs commands with the local shell.
func localClient(t *testing.T) (*Client, *testServer) {
	t.Helper()
	key := mustKey(t)
	srv := newTestServer(t, key)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Dial(ctx, srv.addr, "builder", key, srv.pin().Callback())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c, srv
}

func TestRunEnvironment(t *testing.T) {
	c, _ := localClient(t)
	values := map[string]string{
		"PLAIN":     "debian",
		"EMPTY":     "",
		"QUOTES":    `it's "quoted"`,
		"EXPANSION": "$HOME `id` $(id) ${X:-y} \\ !",
		"NEWLINES":  "one\ntwo\n",
		"UNICODE":   "grüße ✓",
		"LEADING":   "-n",
	}
	for name, want := range values {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, code, err := c.Output(context.Background(), `printf '%s' "$`+name+`"`, RunOptions{Env: values})
			if err != nil || code != 0 {
				t.Fatalf("Run: %d, %v", code, err)
			}
			if string(out) != want {
				t.Errorf("$%s = %q, want %q", name, out, want)
			}
		})
	}
	if _, err := c.Run(context.Background(), "true", RunOptions{Env: map[string]string{"BAD-NAME": "x"}}); err == nil {
		t.Error("an invalid variable name was accepted")
	}
}

func TestRunExitCodes(t *testing.T) {
	c, _ := localClient(t)
	cases := map[string]struct {
		cmd  string
		want int
	}{
		"success":           {"true", 0},
		"failure":           {"false", 1},
		"explicit":          {"exit 42", 42},
		"255 is a real one": {"exit 255", 255},
		"killed by SIGKILL": {"kill -KILL $$", 137},
		"script with lines": {"set -e\necho a\nfalse\necho never", 1},
		"syntax error":      {"if then", 2},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, err := c.Run(context.Background(), tc.cmd, RunOptions{})
			if err != nil || code != tc.want {
				t.Errorf("Run(%q) = %d, %v; want %d", tc.cmd, code, err, tc.want)
			}
		})
	}
}

// lineRecorder records each Write call, to check that writes hold whole lines.
type lineRecorder struct {
	mu     sync.Mutex
	writes []string
	first  chan struct{}
	once   sync.Once
}

func (r *lineRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.writes = append(r.writes, string(p))
	r.mu.Unlock()
	if r.first != nil {
		r.once.Do(func() { close(r.first) })
	}
	return len(p), nil
}

func (r *lineRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

func TestRunStreamsLines(t *testing.T) {
	c, _ := localClient(t)
	var stdout, stderr lineRecorder
	script := `for i in 1 2 3; do printf 'out %s ' "$i"; printf 'part\n'; echo "err $i" >&2; done; printf 'no newline'`
	code, err := c.Run(context.Background(), script, RunOptions{Stdout: &stdout, Stderr: &stderr})
	if err != nil || code != 0 {
		t.Fatalf("Run: %d, %v", code, err)
	}
	if got := strings.Join(stdout.all(), ""); got != "out 1 part\nout 2 part\nout 3 part\nno newline" {
		t.Errorf("stdout %q", got)
	}
	if got := strings.Join(stderr.all(), ""); got != "err 1\nerr 2\nerr 3\n" {
		t.Errorf("stderr %q", got)
	}
	for _, w := range append(stdout.all()[:len(stdout.all())-1], stderr.all()...) {
		if !strings.HasSuffix(w, "\n") {
			t.Errorf("a write ends inside a line: %q", w)
		}
	}
}

func TestLineWriter(t *testing.T) {
	var shared lineRecorder
	lw := newLineWriters(&shared, &shared)
	for _, chunk := range []string{"ab", "c\nd", "ef\n\ngh"} {
		if _, err := lw.stdout.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
		if _, err := lw.stderr.Write([]byte("E" + chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lw.flush(); err != nil {
		t.Fatal(err)
	}
	want := []string{"abc\n", "EabEc\n", "def\n\n", "dEef\n\n", "gh", "gh"}
	if got := shared.all(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("writes %q, want %q (whole lines, the unterminated rest at flush)", got, want)
	}
	failing := newLineWriters(errWriter{}, nil)
	if _, err := failing.stdout.Write([]byte("x\n")); err != nil {
		t.Errorf("a failing log must not fail the session's copy: %v", err)
	}
	if _, err := failing.stderr.Write([]byte("discarded\n")); err != nil {
		t.Error(err)
	}
	if err := failing.flush(); err == nil {
		t.Error("flush did not report the write error")
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestRunCancelKillsCommand cancels a command that started a background job and checks that both die:
// the wrapper kills the whole process group when the session goes.
func TestRunCancelKillsCommand(t *testing.T) {
	c, _ := localClient(t)
	marker := strconv.FormatInt(time.Now().UnixNano()%100000+200000, 10)
	started := &lineRecorder{first: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, "sleep "+marker+" & echo started; sleep "+marker+"1", RunOptions{Stdout: started})
		done <- err
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	select {
	case <-started.first:
	case <-wctx.Done():
		t.Fatal("the command never started")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Run after cancel = %v, want context.Canceled", err)
		}
	case <-wctx.Done():
		t.Fatal("Run did not return after cancel")
	}
	if err := pollUntil(wctx, func() bool { return len(processesWith("sleep "+marker)) == 0 }); err != nil {
		t.Errorf("processes still running after cancel: %v", processesWith("sleep "+marker))
	}
	// The client is still usable.
	if code, err := c.Run(context.Background(), "true", RunOptions{}); err != nil || code != 0 {
		t.Errorf("Run after a cancel = %d, %v", code, err)
	}
}

func TestRunReconnects(t *testing.T) {
	cases := map[string]struct {
		dropSessions, dropAfterStart int32
		idempotent                   bool
		wantErr                      string
		wantRuns                     int32 // how often the command was started
	}{
		"dropped before start, retried":        {dropSessions: 2, wantRuns: 1},
		"dropped while running, not retried":   {dropAfterStart: 1, wantErr: "RunOptions.Idempotent", wantRuns: 1},
		"dropped while running, idempotent":    {dropAfterStart: 1, idempotent: true, wantRuns: 2},
		"always dropped gives up":              {dropSessions: 100, wantErr: "gave up after 5 reconnects"},
		"dropped twice while running, retried": {dropAfterStart: 2, idempotent: true, wantRuns: 3},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, srv := localClient(t)
			srv.dropSessions.Store(tc.dropSessions)
			srv.dropAfterStart.Store(tc.dropAfterStart)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// Long enough that a connection cut right after the start reaches the client first.
			code, err := c.Run(ctx, "sleep 1", RunOptions{Idempotent: tc.idempotent})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Run = %d, %v; want an error with %q", code, err, tc.wantErr)
				}
			} else if err != nil || code != 0 {
				t.Errorf("Run = %d, %v", code, err)
			}
			if runs := srv.started.Load(); runs != tc.wantRuns {
				t.Errorf("the command started %d times, want %d", runs, tc.wantRuns)
			}
		})
	}
}

func TestUploadLocal(t *testing.T) {
	c, _ := localClient(t)
	big := make([]byte, 1<<20+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	cases := map[string]struct {
		content []byte
		mode    os.FileMode
		exists  bool
		wantErr string
	}{
		"new file, default mode":     {content: []byte("hello\n"), mode: 0, wantErr: ""},
		"secret":                     {content: []byte("s3cret"), mode: 0o600},
		"replaces an existing file":  {content: []byte("new"), mode: 0o644, exists: true},
		"binary, over a megabyte":    {content: big, mode: 0o755},
		"empty file":                 {content: nil, mode: 0o640},
		"destination folder missing": {content: []byte("x"), wantErr: "upload"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dest := filepath.Join(dir, "file.conf")
			if strings.Contains(name, "missing") {
				dest = filepath.Join(dir, "no", "file.conf")
			}
			var oldIno uint64
			if tc.exists {
				if err := os.WriteFile(dest, []byte("old content"), 0o600); err != nil {
					t.Fatal(err)
				}
				oldIno = inode(t, dest)
			}
			err := c.Upload(context.Background(), bytes.NewReader(tc.content), dest, UploadOptions{Mode: tc.mode})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Upload = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dest)
			if err != nil || !bytes.Equal(got, tc.content) {
				t.Fatalf("content differs (%d bytes, %v)", len(got), err)
			}
			want := tc.mode
			if want == 0 {
				want = 0o644
			}
			if fi, _ := os.Stat(dest); fi.Mode().Perm() != want {
				t.Errorf("mode %o, want %o", fi.Mode().Perm(), want)
			}
			if tc.exists && inode(t, dest) == oldIno {
				t.Error("the file was rewritten in place, not replaced by a rename")
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("%d entries in the folder, want only the file (temporary files left?)", len(ents))
			}
		})
	}
	t.Run("reader error leaves nothing", func(t *testing.T) {
		dir := t.TempDir()
		r := io.MultiReader(strings.NewReader("partial"), errReader{})
		if err := c.Upload(context.Background(), r, filepath.Join(dir, "f"), UploadOptions{}); err == nil {
			t.Fatal("Upload succeeded with a failing reader")
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("left behind: %v", ents)
		}
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read failed") }

func pollUntil(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// processesWith lists live local processes whose command line contains s.
func processesWith(s string) []string {
	ents, _ := os.ReadDir("/proc") // an unreadable /proc shows as no processes
	var found []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if strings.Contains(cmd, s) && !strings.Contains(string(stat), ") Z ") {
			found = append(found, fmt.Sprintf("%s: %s", e.Name(), cmd))
		}
	}
	return found
}

// The environment and the script go to the guest on standard input: a command line can be read by every
// user in the guest (ps) and sudo logs it to the journal, which ships in the image.
func TestRunKeepsScriptAndEnvironmentOffCommandLines(t *testing.T) {
	c, _ := localClient(t)
	secret := "s3cret-" + strconv.Itoa(os.Getpid())
	script := "# script-marker-" + strconv.Itoa(os.Getpid()) + "\n" +
		`test "$SECRET" = "$WANT" || exit 9
for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f" 2>/dev/null; echo; done`
	out, code, err := c.Output(context.Background(), script, RunOptions{Env: map[string]string{"SECRET": secret, "WANT": secret}})
	if err != nil || code != 0 {
		t.Fatalf("Run: %d, %v", code, err)
	}
	if !strings.Contains(string(out), "imgform-run") {
		t.Fatalf("the command lines do not show the wrapper; the check sees nothing:\n%s", out)
	}
	for _, marker := range []string{secret, "script-marker-"} {
		if strings.Contains(string(out), marker) {
			t.Errorf("%q is on a command line:\n%s", marker, out)
		}
	}
	if _, err := c.Run(context.Background(), `env | grep -q IMGFORM_SCRIPT && exit 1 || exit 0`, RunOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A script cut short (the connection broke while it was sent) must not run at all: its first half could
// be "rm -rf /" of "rm -rf /var/tmp/x". The input stays open after a whole script, as the session's does.
func TestRunWrapperRefusesAnIncompleteScript(t *testing.T) {
	for name, tc := range map[string]struct {
		input    string
		whole    bool
		wantCode int
		wantOut  string
	}{
		"whole":           {"9\necho ran\n", true, 0, "ran\n"},
		"whole, empty":    {"0\n", true, 0, ""},
		"cut short":       {"20\necho ran\n", false, 125, ""},
		"no length":       {"", false, 125, ""},
		"not a length":    {"x\necho ran\n", false, 125, ""},
		"negative length": {"-1\necho ran\n", false, 125, ""},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", runWrapper, "imgform-run")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			cmd.Stdout = &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(stdin, tc.input); err != nil {
				t.Fatal(err)
			}
			if !tc.whole {
				_ = stdin.Close()
			}
			err = cmd.Wait()
			_ = stdin.Close()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode || out.String() != tc.wantOut {
				t.Errorf("exit %d, stdout %q; want %d, %q", code, out.String(), tc.wantCode, tc.wantOut)
			}
		})
	}
}

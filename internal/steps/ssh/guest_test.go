package ssh_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// TestGuest runs the communicator against a real Debian 12 guest booted with cloud-init, in order: the
// login first, the rest on the connection it made.
func TestGuest(t *testing.T) {
	g := shared.get(t)
	ctx := guestCtx
	var (
		c  *ssh.Client
		hk *ssh.HostKeys
	)
	if !t.Run("dial pins the console's host key", func(t *testing.T) {
		var err error
		if c, hk, err = g.Dial(ctx, nil); err != nil {
			t.Fatal(err)
		}
		t.Logf("SSH login %s after the boot started", time.Since(shared.start).Round(time.Second))
	}) {
		t.FailNow()
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}()

	t.Run("wrong host key is refused", func(t *testing.T) {
		other, err := ssh.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		wrong := ssh.PinKeys(other.PublicKey())
		dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		c2, err := ssh.Dial(dctx, g.VM.SSHAddr(), "builder", g.Key, wrong.Callback())
		var mismatch *ssh.HostKeyMismatchError
		if !errors.As(err, &mismatch) {
			if c2 != nil {
				_ = c2.Close()
			}
			t.Fatalf("Dial with a wrong pinned key = %v, want a *HostKeyMismatchError", err)
		}
		t.Logf("refused: %v", err)
	})

	t.Run("wait for cloud-init", func(t *testing.T) {
		start := time.Now()
		status, err := ssh.WaitCloudInit(ctx, c)
		if err != nil || status != "done" {
			t.Fatalf("WaitCloudInit = %q, %v", status, err)
		}
		t.Logf("cloud-init done %s after the login, %s after the boot started", time.Since(start).Round(time.Second),
			time.Since(shared.start).Round(time.Second))
	})

	t.Run("console keys agree with the pinned key", func(t *testing.T) {
		b, err := os.ReadFile(g.VM.SerialLog())
		if err != nil {
			t.Fatal(err)
		}
		keys, err := ssh.HostKeysFromConsole(string(b))
		if err != nil {
			t.Fatal(err)
		}
		acc := hk.Accepted()
		if len(acc) != 1 || !ssh.ParseConsole(string(b)).Allows(acc[0]) || len(keys) < 2 {
			t.Errorf("the key the login accepted is not in the KEYS block")
		}
		// The record a resumed build pins works for a new connection.
		rec, err := ssh.ParseHostKeys(ssh.MarshalHostKeys(acc))
		if err != nil {
			t.Fatal(err)
		}
		pinned := ssh.PinKeys(rec...)
		c2, err := ssh.Dial(ctx, g.VM.SSHAddr(), "builder", g.Key, pinned.Callback(), ssh.WithHostKeys(pinned))
		if err != nil {
			t.Fatalf("Dial with the recorded key: %v", err)
		}
		if err := c2.Close(); err != nil {
			t.Error(err)
		}
	})

	t.Run("run", func(t *testing.T) { testRun(ctx, t, c) })
	t.Run("output streams while the command runs", func(t *testing.T) { testStreaming(ctx, t, c) })
	t.Run("cancel kills the remote command", func(t *testing.T) { testCancel(ctx, t, c) })
	t.Run("upload", func(t *testing.T) { testUpload(ctx, t, c) })
	t.Run("interactive shell", func(t *testing.T) { testInteractive(ctx, t, c) })
}

// testInteractive types into a login shell on the guest's pseudo-terminal, as imgform shell does.
func testInteractive(ctx context.Context, t *testing.T, c *ssh.Client) {
	var out strings.Builder
	code, err := c.Interactive(ctx, ssh.Terminal{
		In:  strings.NewReader("tty; echo answer-$((6*7)); exit 5\n"),
		Out: &out, Err: &out,
	})
	if err != nil || code != 5 {
		t.Fatalf("Interactive = %d, %v; want the shell's exit status 5\n%s", code, err, out.String())
	}
	if !strings.Contains(out.String(), "answer-42") || !strings.Contains(out.String(), "/dev/pts/") {
		t.Errorf("the session on a terminal printed %q; want answer-42 and a /dev/pts tty", out.String())
	}
}

func testRun(ctx context.Context, t *testing.T, c *ssh.Client) {
	env := map[string]string{"GREETING": `it's "$HOME" ` + "`id`\nline 2", "EMPTY": ""}
	cases := map[string]struct {
		cmd        string
		opts       ssh.RunOptions
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		"user":                 {cmd: "id -un", wantStdout: "builder\n"},
		"sudo":                 {cmd: "id -un", opts: ssh.RunOptions{Sudo: true}, wantStdout: "root\n"},
		"environment":          {cmd: `printf '%s|%s' "$GREETING" "${EMPTY-unset}"`, opts: ssh.RunOptions{Env: env}, wantStdout: env["GREETING"] + "|"},
		"environment and sudo": {cmd: `printf '%s' "$GREETING"; id -u`, opts: ssh.RunOptions{Env: env, Sudo: true}, wantStdout: env["GREETING"] + "0\n"},
		"exit code":            {cmd: "echo out; echo err >&2; exit 7", wantCode: 7, wantStdout: "out\n", wantStderr: "err\n"},
		"exit code under sudo": {cmd: "exit 3", opts: ssh.RunOptions{Sudo: true}, wantCode: 3},
		"shell script":         {cmd: "set -eu\nx=1\n[ \"$x\" = 1 ]\nfalse\necho unreachable", wantCode: 1},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			tc.opts.Stdout, tc.opts.Stderr = &stdout, &stderr
			code, err := c.Run(ctx, tc.cmd, tc.opts)
			if err != nil || code != tc.wantCode {
				t.Fatalf("Run = %d, %v; want %d (stderr %q)", code, err, tc.wantCode, stderr.String())
			}
			if stdout.String() != tc.wantStdout {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.wantStdout)
			}
			if tc.wantStderr != "" && stderr.String() != tc.wantStderr {
				t.Errorf("stderr %q, want %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}

// notifyWriter closes first on the first write.
type notifyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	first chan struct{}
	once  sync.Once
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	w.once.Do(func() { close(w.first) })
	return len(p), nil
}

func (w *notifyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// testStreaming proves that output arrives while the command runs, without timing anything: the command
// prints a line and then waits for a file that the test creates only after it has received that line.
func testStreaming(ctx context.Context, t *testing.T, c *ssh.Client) {
	flagFile := fmt.Sprintf("/tmp/imgform-stream-%d", time.Now().UnixNano())
	out := &notifyWriter{first: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		code, err := c.Run(ctx, "echo waiting; while [ ! -e "+flagFile+" ]; do sleep 0.2; done; echo done", ssh.RunOptions{Stdout: out})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit code %d", code)
		}
		done <- err
	}()
	select {
	case <-out.first:
	case err := <-done:
		t.Fatalf("the command ended before any output arrived: %v", err)
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if got := out.String(); got != "waiting\n" {
		t.Errorf("first output %q", got)
	}
	if code, err := c.Run(ctx, "touch "+flagFile, ssh.RunOptions{}); err != nil || code != 0 {
		t.Fatalf("touch: %d, %v", code, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "waiting\ndone\n" {
		t.Errorf("output %q", got)
	}
}

func testCancel(ctx context.Context, t *testing.T, c *ssh.Client) {
	for _, sudo := range []bool{false, true} {
		t.Run(fmt.Sprintf("sudo=%v", sudo), func(t *testing.T) {
			marker := fmt.Sprintf("%d", 400000+time.Now().UnixNano()%100000)
			out := &notifyWriter{first: make(chan struct{})}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				_, err := c.Run(rctx, "sleep "+marker+"1 & echo started; sleep "+marker+"2", ssh.RunOptions{Stdout: out, Sudo: sudo})
				done <- err
			}()
			select {
			case <-out.first:
			case err := <-done:
				t.Fatalf("ended early: %v", err)
			}
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run after cancel = %v", err)
			}
			// The kill happens in the guest as the session closes; poll until both sleeps are gone.
			pctx, pcancel := context.WithTimeout(ctx, time.Minute)
			defer pcancel()
			for {
				code, err := c.Run(pctx, "! pgrep -f 'sleep "+marker+"[12]'", ssh.RunOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if code == 0 {
					break
				}
				tick := time.NewTimer(200 * time.Millisecond)
				select {
				case <-pctx.Done():
					t.Fatal("the cancelled command's processes still run in the guest")
				case <-tick.C:
				}
			}
		})
	}
}

func testUpload(ctx context.Context, t *testing.T, c *ssh.Client) {
	if code, err := c.Run(ctx, "mkdir -p /etc/imgform && echo old > /etc/imgform/replace.conf", ssh.RunOptions{Sudo: true}); err != nil || code != 0 {
		t.Fatalf("prepare: %d, %v", code, err)
	}
	big := make([]byte, 3<<20+5)
	for i := range big {
		big[i] = byte(i*31 + i>>8)
	}
	cases := map[string]struct {
		dest    string
		content []byte
		opts    ssh.UploadOptions
		want    string // stat -c '%a %U:%G'
		replace bool
	}{
		"home file, login user":    {dest: "/home/builder/user.txt", content: []byte("user\n"), opts: ssh.UploadOptions{Mode: 0o600}, want: "600 builder:builder"},
		"root folder needs sudo":   {dest: "/usr/local/bin/tool", content: []byte("#!/bin/sh\necho hi\n"), opts: ssh.UploadOptions{Mode: 0o755}, want: "755 root:root"},
		"owner and group":          {dest: "/etc/imgform/app.conf", content: []byte("key=value\n"), opts: ssh.UploadOptions{Mode: 0o640, Owner: "root:adm"}, want: "640 root:adm"},
		"owner in the user's home": {dest: "/home/builder/owned", content: []byte("x"), opts: ssh.UploadOptions{Owner: "root"}, want: "644 root:root"},
		"replaces atomically":      {dest: "/etc/imgform/replace.conf", content: []byte("new\n"), opts: ssh.UploadOptions{Mode: 0o644}, want: "644 root:root", replace: true},
		"three megabytes binary":   {dest: "/home/builder/big.bin", content: big, want: "644 builder:builder"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var oldIno string
			if tc.replace {
				out, _, err := c.Output(ctx, "stat -c %i "+tc.dest, ssh.RunOptions{})
				if err != nil {
					t.Fatal(err)
				}
				oldIno = strings.TrimSpace(string(out))
			}
			if err := c.Upload(ctx, bytes.NewReader(tc.content), tc.dest, tc.opts); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(tc.content)
			out, code, err := c.Output(ctx, fmt.Sprintf("stat -c '%%a %%U:%%G %%i' %s; sha256sum < %s; ls -A %s | grep -c imgform-upload || true",
				tc.dest, tc.dest, filepath.Dir(tc.dest)), ssh.RunOptions{Sudo: true})
			if err != nil || code != 0 {
				t.Fatalf("check: %d, %v", code, err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 3 {
				t.Fatalf("check output %q", out)
			}
			st := strings.Fields(lines[0])
			if strings.Join(st[:2], " ") != tc.want {
				t.Errorf("mode and owner %q, want %q", strings.Join(st[:2], " "), tc.want)
			}
			if got := strings.Fields(lines[1])[0]; got != hex.EncodeToString(sum[:]) {
				t.Errorf("content sha256 %s, want %x", got, sum)
			}
			if lines[2] != "0" {
				t.Errorf("%s temporary files left in %s", lines[2], filepath.Dir(tc.dest))
			}
			if tc.replace && st[2] == oldIno {
				t.Errorf("inode %s unchanged: the file was rewritten in place, not renamed over", oldIno)
			}
		})
	}
}

// TestCloudInitError makes the guest's runcmd fail and checks what WaitCloudInit reports. It runs last: it
// leaves cloud-init in the error state.
//
// The failure is real cloud-init behaviour, made without a second boot (which would double this package's
// run time on a small host): with the flag file in place, the final stage is run again as cloud-init's
// own service runs it, and the user-data's runcmd fails inside the scripts-user module. A first boot with a
// failing runcmd (checked once with a guest of its own) gives the same "status: error" with the detail
// ('scripts-user', RuntimeError('Runparts: 1 failures (runcmd) in 1 attempted commands')).
func TestCloudInitError(t *testing.T) {
	g := shared.get(t)
	c, _, err := g.Dial(guestCtx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	}()
	if status, err := ssh.WaitCloudInit(guestCtx, c); err != nil || status != "done" {
		t.Fatalf("before the failure: WaitCloudInit = %q, %v", status, err)
	}
	var out bytes.Buffer
	code, err := c.Run(guestCtx, "touch "+failFlag+" && rm -f /var/lib/cloud/instance/sem/config_scripts_user && "+
		"cloud-init modules --mode final", ssh.RunOptions{Sudo: true, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cloud-init modules --mode final: exit code %d", code)

	status, err := ssh.WaitCloudInit(guestCtx, c)
	t.Logf("cloud-init 22.4 after a failed runcmd: status %q\n%v", status, err)
	var ce *ssh.CloudInitError
	if !errors.As(err, &ce) {
		t.Fatalf("WaitCloudInit = %q, %v; want a *CloudInitError", status, err)
	}
	if status != "error" || ce.Status != "error" || ce.ExitCode != 1 {
		t.Errorf("status %q, exit code %d; want error, 1", status, ce.ExitCode)
	}
	for _, want := range []string{"status: error", "scripts-user", "Runparts: 1 failures (runcmd)"} {
		if !strings.Contains(ce.Long, want) {
			t.Errorf("status --long lacks %q:\n%s", want, ce.Long)
		}
	}
	if !strings.Contains(ce.LogTail, "imgform-runcmd-marker") {
		t.Errorf("the log tail lacks the runcmd's output:\n%s", ce.LogTail)
	}
	if !strings.Contains(err.Error(), "imgform-runcmd-marker") {
		t.Errorf("the error message lacks the log tail: %v", err)
	}
}

package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/engine"
	"gitlab.com/imgform/imgform/internal/steps/cleanup"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// runStep does the work of one step in the running guest.
func (s *session) runStep(ctx context.Context, sp *engine.StepPlan) error {
	switch sp.Kind {
	case engine.KindBoot:
		return nil // booting, login and cloud-init happened in start
	case engine.KindProvision:
		return s.provision(ctx, sp, s.job.Image.Provisioners[indexOf(s.job.Image, sp.Name)])
	case engine.KindCleanup:
		return s.cleanup(ctx, sp)
	}
	return fmt.Errorf("not a disk step: %s", sp.Kind)
}

func indexOf(img *config.Image, name string) int {
	for i, p := range img.Provisioners {
		if p.Name == name {
			return i
		}
	}
	return -1
}

// provision uploads the files, then runs the script or the inline commands, streaming their output.
func (s *session) provision(ctx context.Context, sp *engine.StepPlan, p *config.Provisioner) error {
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	for _, u := range p.Uploads {
		opts := ssh.UploadOptions{Owner: u.Owner, Sudo: p.Sudo}
		if u.Mode != "" {
			m, err := strconv.ParseUint(u.Mode, 8, 32)
			if err != nil {
				return fmt.Errorf("file %s: mode %q: %w", u.Destination, u.Mode, err)
			}
			opts.Mode = fileMode(m)
		}
		var err error
		if u.HasContent {
			err = s.client.Upload(ctx, strings.NewReader(u.Content), u.Destination, opts)
		} else {
			err = s.client.UploadFile(ctx, s.localPath(u.Source), u.Destination, opts)
		}
		if err != nil {
			return fmt.Errorf("upload to %s: %w", u.Destination, err)
		}
	}
	cmd, err := commandFor(ctx, s.client, s.job.ConfigDir, "provision", p.Name, p.Script, p.Inline)
	if err != nil || cmd == "" {
		return err
	}
	out := &tailWriter{emit: func(line string) { s.job.Output(sp, line) }}
	code, err := s.client.Run(ctx, cmd, ssh.RunOptions{Env: p.Environment, Sudo: p.Sudo, Stdout: out, Stderr: out})
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s (raise the provisioner's timeout)\n%s", p.Timeout, s.job.Redact(out.tail()))
		}
		return err
	}
	if code != 0 {
		return fmt.Errorf("exited with status %d; last output:\n%s", code, s.job.Redact(out.tail()))
	}
	return nil
}

// cleanup runs the cleanup script and powers the guest off; the layer it wrote is final once QEMU exits.
func (s *session) cleanup(ctx context.Context, sp *engine.StepPlan) error {
	img := s.job.Image
	script := cleanup.Script(cleanup.Options{Cleanup: img.Cleanup, BuildUser: s.job.BuildUser, Networks: img.Networks})
	out := &tailWriter{emit: func(line string) { s.job.Output(sp, line) }}
	code, err := s.client.Run(ctx, script, ssh.RunOptions{Sudo: true, Stdout: out, Stderr: out})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("cleanup exited with status %d; last output:\n%s", code, out.tail())
	}
	return nil
}

// commandFor returns the shell command of a provisioner's or test's script or inline commands ("" when it
// has neither). A script is uploaded to /tmp/imgform-<kind>-<name> first, run by path so that its own
// shebang decides the interpreter, and removed.
func commandFor(ctx context.Context, client *ssh.Client, configDir, kind, name, script string, inline []string) (string, error) {
	switch {
	case script != "":
		remote := "/tmp/imgform-" + kind + "-" + sanitize(name)
		if err := client.UploadFile(ctx, localPath(configDir, script), remote, ssh.UploadOptions{Mode: 0o700}); err != nil {
			return "", fmt.Errorf("upload of script %s: %w", script, err)
		}
		return fmt.Sprintf("%s; rc=$?; rm -f %s; exit $rc", ssh.Quote(remote), ssh.Quote(remote)), nil
	case len(inline) > 0:
		return "set -e\n" + strings.Join(inline, "\n"), nil
	}
	return "", nil
}

// finish ends the session after the last step: wait for the guest to power off (or power it off), then
// commit the active layer, which is final once QEMU has exited.
func (s *session) finish(ctx context.Context, last *engine.StepPlan) error {
	timeout := s.job.Image.Machine.ShutdownTimeout
	if last.Kind != engine.KindCleanup {
		if code, err := s.client.Run(ctx, "sync", ssh.RunOptions{Sudo: true, Idempotent: true}); err != nil || code != 0 {
			return fmt.Errorf("sync: exit %d: %v", code, err)
		}
	} else {
		select {
		case <-s.vm.Exited():
		case <-time.After(timeout):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	_ = s.client.Close()
	s.client = nil
	if _, err := s.vm.Shutdown(ctx, timeout); err != nil {
		return fmt.Errorf("shutting down the VM: %w", err)
	}
	if s.job.Done != nil {
		s.job.Done(last)
	}
	l := s.active
	s.active = nil
	return s.commit(l)
}

func (s *session) localPath(p string) string { return localPath(s.job.ConfigDir, p) }

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
}

// tailWriter passes output on line by line and keeps the last lines for error messages.
type tailWriter struct {
	mu    sync.Mutex
	emit  func(string)
	buf   []byte
	lines []string
}

var _ io.Writer = (*tailWriter)(nil)

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	for {
		i := strings.IndexByte(string(t.buf), '\n')
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(t.buf[:i]), "\r")
		t.buf = t.buf[i+1:]
		t.emit(line)
		t.lines = append(t.lines, line)
		if len(t.lines) > 20 {
			t.lines = t.lines[len(t.lines)-20:]
		}
	}
	return len(p), nil
}

func (t *tailWriter) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.buf) > 0 {
		lines = append(lines, string(t.buf))
	}
	return strings.Join(lines, "\n")
}

// Package steptest has a recording step.Shell for the tests of guest kinds, so a kind's RunGuest is tested
// without a VM.
package steptest

import (
	"context"
	"io"
	"sync"

	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// Shell records what a guest kind does in the guest. Reply decides each command's output and exit code;
// nil exits 0 silently.
type Shell struct {
	Reply func(ctx context.Context, cmd string) (output string, code int, err error)

	mu      sync.Mutex
	Runs    []Run
	Uploads []Upload
}

// Run is one command the kind ran.
type Run struct {
	Cmd  string
	Opts ssh.RunOptions
}

// Upload is one file the kind copied into the guest, with its content.
type Upload struct {
	Dest    string
	Content string
	Opts    ssh.UploadOptions
}

func (s *Shell) Run(ctx context.Context, cmd string, opts ssh.RunOptions) (int, error) {
	s.mu.Lock()
	s.Runs = append(s.Runs, Run{Cmd: cmd, Opts: opts})
	s.mu.Unlock()
	if s.Reply == nil {
		return 0, nil
	}
	out, code, err := s.Reply(ctx, cmd)
	if out != "" && opts.Stdout != nil {
		if _, werr := io.WriteString(opts.Stdout, out); werr != nil {
			return 0, werr
		}
	}
	return code, err
}

func (s *Shell) Upload(_ context.Context, r io.Reader, dest string, opts ssh.UploadOptions) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Uploads = append(s.Uploads, Upload{Dest: dest, Content: string(b), Opts: opts})
	return nil
}

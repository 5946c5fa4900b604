package ssh

import (
	"context"
	"fmt"
	"io"
	"os"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// Terminal is the local end of an interactive session: the user's terminal, or a pseudo-terminal in tests.
type Terminal struct {
	In       io.Reader
	Out, Err io.Writer
	// Type is $TERM for the guest's terminal; "" means xterm-256color.
	Type string
}

// Interactive opens a login shell in the guest on a pseudo-terminal and connects it to t until the shell
// ends; it returns the shell's exit code. When t.In is a terminal it is put into raw mode for the session
// (keys such as Ctrl-C then reach the guest, not imgform) and its size is passed on.
func (c *Client) Interactive(ctx context.Context, t Terminal) (int, error) {
	conn, err := c.connection(ctx)
	if err != nil {
		return -1, err
	}
	sess, err := conn.NewSession()
	if err != nil {
		return -1, fmt.Errorf("ssh: new session: %w", err)
	}
	defer sess.Close()
	width, height := 80, 24
	if f, ok := t.In.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if w, h, err := term.GetSize(int(f.Fd())); err == nil {
			width, height = w, h
		}
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return -1, fmt.Errorf("ssh: terminal raw mode: %w", err)
		}
		defer func() { _ = term.Restore(int(f.Fd()), old) }()
	}
	typ := t.Type
	if typ == "" {
		typ = "xterm-256color"
	}
	modes := ssh.TerminalModes{ssh.ECHO: 1, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
	if err := sess.RequestPty(typ, height, width, modes); err != nil {
		return -1, fmt.Errorf("ssh: pseudo-terminal: %w", err)
	}
	sess.Stdout, sess.Stderr = t.Out, t.Err
	stdin, err := sess.StdinPipe()
	if err != nil {
		return -1, fmt.Errorf("ssh: %w", err)
	}
	// Not waited for: a read from a terminal blocks until the next key, after the shell has ended.
	go func() {
		_, _ = io.Copy(stdin, t.In)
		_ = stdin.Close()
	}()
	if err := sess.Shell(); err != nil {
		return -1, fmt.Errorf("ssh: shell: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Close()
		return -1, ctx.Err()
	}
	if code, ok := exitStatus(err); ok {
		return code, nil
	}
	return -1, fmt.Errorf("ssh: shell: %w", err)
}

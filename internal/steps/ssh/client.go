package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxReconnects bounds how often one command reconnects after a dropped connection: cloud-init restarts
// sshd once or twice on a first boot; more drops than this mean something else is wrong.
const maxReconnects = 5

// cancelGrace is how long a cancelled command gets to be killed and report its exit status before the
// session is closed under it.
const cancelGrace = 10 * time.Second

// Client is a connection to the build VM that reconnects when the guest drops it. Its methods may be called
// from several goroutines; each call uses its own SSH session.
type Client struct {
	addr   string
	config *ssh.ClientConfig
	opts   dialOptions

	mu   sync.Mutex
	conn *ssh.Client
}

// Close closes the connection. Commands still running on it end with an error.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("ssh: close: %w", err)
	}
	return nil
}

// connection returns the current connection, dialing again (with Dial's patience) when there is none.
func (c *Client) connection(ctx context.Context) (*ssh.Client, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		return conn, nil
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		// Another goroutine reconnected first; use its connection.
		_ = conn.Close() // an unused duplicate: nothing to report
		return c.conn, nil
	}
	c.conn = conn
	return conn, nil
}

// drop forgets conn after it failed, so that the next call reconnects.
func (c *Client) drop(conn *ssh.Client) {
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	c.mu.Unlock()
	_ = conn.Close() // already broken: the error is the one that made us drop it
}

// ConnLostError means the connection to the guest broke; Started says whether the command may have run.
type ConnLostError struct {
	Started bool
	Err     error
}

func (e *ConnLostError) Error() string {
	if e.Started {
		return fmt.Sprintf("ssh: connection lost while the command ran: %v", e.Err)
	}
	return fmt.Sprintf("ssh: connection lost before the command started: %v", e.Err)
}

func (e *ConnLostError) Unwrap() error { return e.Err }

// session is one command on the guest.
type session struct {
	cmd    string
	stdin  io.Reader // nil: a pipe held open until the command ends, closed to cancel it
	prefix []byte    // with a nil stdin: written to the pipe first (runWrapper's script)
	stdout io.Writer
	stderr io.Writer
}

// execSession runs s on conn. It returns the exit code, or a *ConnLostError when the connection broke, or
// the context's error after the command was killed.
func execSession(ctx context.Context, conn *ssh.Client, s session) (int, error) {
	sess, err := conn.NewSession()
	if err != nil {
		return -1, &ConnLostError{Err: err}
	}
	defer func() { _ = sess.Close() }() // io.EOF when the command ended: nothing to report
	sess.Stdout, sess.Stderr = s.stdout, s.stderr
	// The pipe must exist before Start. Without input of its own the command gets a pipe that stays open
	// until it ends: closing it is how a cancel reaches the wrapper (runWrapper).
	stdin, err := sess.StdinPipe()
	if err != nil {
		return -1, fmt.Errorf("ssh: stdin: %w", err)
	}
	if err := sess.Start(s.cmd); err != nil {
		// The server refused or never answered the exec request: the command did not start.
		return -1, &ConnLostError{Err: err}
	}
	var copyErr chan error
	if s.stdin == nil && len(s.prefix) > 0 {
		// In its own goroutine: a write can wait for the channel's window. An error shows as the command's
		// (the wrapper exits 125 without its script) or as the lost connection.
		go func() { _, _ = stdin.Write(s.prefix) }()
	}
	if s.stdin != nil {
		copyErr = make(chan error, 1)
		go func() {
			_, err := io.Copy(stdin, s.stdin)
			copyErr <- errors.Join(err, stdin.Close())
		}()
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		if s.stdin == nil {
			// The wrapper (runWrapper) kills the command's process group on end of input, then exits
			// with the command's status; wait a little for that before tearing the session down.
			_ = stdin.Close() // the session may already be gone
			t := time.NewTimer(cancelGrace)
			select {
			case <-done:
			case <-t.C:
			}
			t.Stop()
		}
		_ = sess.Signal(ssh.SIGKILL) // best effort: the session is closed next anyway
		return -1, fmt.Errorf("ssh: command cancelled: %w", context.Cause(ctx))
	}
	if copyErr != nil {
		if cerr := <-copyErr; cerr != nil && err == nil {
			err = cerr
		}
	}
	if code, ok := exitStatus(err); ok {
		return code, nil
	}
	// *ssh.ExitMissingError, io.EOF, a reset: the status never came.
	return -1, &ConnLostError{Started: true, Err: err}
}

// exitStatus is the exit status a session's Wait reported: 0 for no error, the status of an *ssh.ExitError;
// ok is false when err says no status came.
func exitStatus(err error) (code int, ok bool) {
	var exit *ssh.ExitError
	switch {
	case err == nil:
		return 0, true
	case errors.As(err, &exit):
		return exit.ExitStatus(), true
	}
	return -1, false
}

// IsConnLost reports whether err from Run says that the connection broke (rather than the command
// failing): what a command that reboots the guest or restarts its network causes.
func IsConnLost(err error) bool { return isConnLost(err) }

// isConnLost reports whether err says the connection broke (rather than the command failing).
func isConnLost(err error) bool {
	var lost *ConnLostError
	return errors.As(err, &lost) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, net.ErrClosed)
}

// mayHaveRun reports whether the command behind a lost connection may have started; only a
// *ConnLostError can say it did not.
func mayHaveRun(err error) bool {
	var lost *ConnLostError
	return !errors.As(err, &lost) || lost.Started
}

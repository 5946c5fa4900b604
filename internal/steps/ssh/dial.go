package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"gitlab.com/imgform/imgform/internal/debuglog"
)

// DialOption changes how Dial waits for the guest.
type DialOption func(*dialOptions)

type dialOptions struct {
	consoleTail    func() string
	hostKeyAlgos   []string
	attemptTimeout time.Duration // one attempt: TCP connect, banner, key exchange, login and a first command
	minBackoff     time.Duration
	maxBackoff     time.Duration
	logf           func(format string, args ...any)
}

// WithConsoleTail gives Dial a function returning the last lines of the guest's serial console; they go
// into the error when no login works, since the console is where a stuck boot shows why.
func WithConsoleTail(f func() string) DialOption {
	return func(o *dialOptions) { o.consoleTail = f }
}

// WithHostKeys offers only the algorithms of h's pinned keys (see HostKeys.Algorithms), so that a server
// with several host keys shows one that is pinned.
func WithHostKeys(h *HostKeys) DialOption {
	return func(o *dialOptions) { o.hostKeyAlgos = h.Algorithms() }
}

// WithLogf reports each failed attempt, for progress output and debugging.
func WithLogf(f func(format string, args ...any)) DialOption {
	return func(o *dialOptions) { o.logf = f }
}

// WithRetry sets how long one attempt may take and the delays between attempts (doubling from min to
// max). The defaults (90 s, 0.5 s to 5 s) suit a guest that boots for minutes; a guest resumed from a saved
// state is there within a second or two, and a doubling delay would make it wait longer than it needs.
func WithRetry(attempt, minBackoff, maxBackoff time.Duration) DialOption {
	return func(o *dialOptions) { o.attemptTimeout, o.minBackoff, o.maxBackoff = attempt, minBackoff, maxBackoff }
}

// DialError says that no login worked before the context ended.
type DialError struct {
	Addr     string
	User     string
	Attempts int
	Elapsed  time.Duration
	Last     error  // the last attempt's error
	Cause    error  // why waiting stopped: the context's error
	Console  string // the tail of the serial console, if known
}

func (e *DialError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh: no login as %s@%s after %s (%d attempts): %v", e.User, e.Addr,
		e.Elapsed.Round(time.Second), e.Attempts, e.Cause)
	if e.Last != nil {
		fmt.Fprintf(&b, "; last error: %v", e.Last)
	}
	if e.Console != "" {
		fmt.Fprintf(&b, "\nlast lines of the serial console:\n%s", strings.TrimRight(e.Console, "\n"))
	}
	return b.String()
}

// Unwrap gives errors.Is access to both the context's error and the last attempt's.
func (e *DialError) Unwrap() []error { return []error{e.Cause, e.Last} }

// Dial connects to addr (the forwarded port on 127.0.0.1) as user with key, checking the server with
// hostKeyCallback, and waits under ctx until a full login works: a TCP connect proves nothing with QEMU's
// user-mode network, which accepts at once and resets the connection while the guest has no sshd. It
// retries with a growing delay on every error except a host key mismatch. The Client reconnects with the
// same settings when a connection drops (see Run).
func Dial(ctx context.Context, addr, user string, key *Key, hostKeyCallback ssh.HostKeyCallback, opts ...DialOption) (*Client, error) {
	if key == nil || hostKeyCallback == nil {
		return nil, errors.New("ssh: Dial needs a key and a host key callback")
	}
	// 90 s for one attempt is generous because sshd is slow under TCG on a busy host.
	o := dialOptions{attemptTimeout: 90 * time.Second, minBackoff: 500 * time.Millisecond, maxBackoff: 5 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{
		addr: addr,
		opts: o,
		config: &ssh.ClientConfig{
			User:              user,
			Auth:              []ssh.AuthMethod{ssh.PublicKeys(key.Signer())},
			HostKeyCallback:   hostKeyCallback,
			HostKeyAlgorithms: o.hostKeyAlgos,
			Timeout:           o.attemptTimeout,
		},
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	return c, nil
}

// connect retries dialOnce until it works, the context ends or the host key is wrong.
func (c *Client) connect(ctx context.Context) (*ssh.Client, error) {
	start := time.Now()
	delay := c.opts.minBackoff
	var last error
	for attempt := 1; ; attempt++ {
		conn, err := c.dialOnce(ctx)
		if err == nil {
			debuglog.Debugf("ssh", "%s@%s connected at attempt %d after %s", c.config.User, c.addr, attempt, time.Since(start).Round(time.Millisecond))
			return conn, nil
		}
		var mismatch *HostKeyMismatchError
		if errors.As(err, &mismatch) {
			return nil, err
		}
		if ctx.Err() == nil || last == nil {
			// An attempt cut short by the context says nothing about the guest; keep the one before.
			last = err
		}
		debuglog.Debugf("ssh", "%s@%s attempt %d failed after %s: %v", c.config.User, c.addr, attempt, time.Since(start).Round(time.Millisecond), err)
		if c.opts.logf != nil {
			c.opts.logf("ssh: %s@%s attempt %d: %v", c.config.User, c.addr, attempt, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			e := &DialError{Addr: c.addr, User: c.config.User, Attempts: attempt, Elapsed: time.Since(start),
				Last: last, Cause: ctx.Err()}
			if c.opts.consoleTail != nil {
				e.Console = c.opts.consoleTail()
			}
			return nil, e
		case <-t.C:
		}
		delay = min(delay*2, c.opts.maxBackoff)
	}
}

// dialOnce makes one full attempt: connect, handshake, log in, and run a no-op command, because sshd
// accepting the login does not yet mean it can start a session.
func (c *Client) dialOnce(ctx context.Context) (*ssh.Client, error) {
	actx, cancel := context.WithTimeout(ctx, c.opts.attemptTimeout)
	defer cancel()
	var d net.Dialer
	tcp, err := d.DialContext(actx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	// The handshake has no context: close the socket when the attempt's context ends, which unblocks it
	// and makes it fail with the reason.
	stop := context.AfterFunc(actx, func() { _ = tcp.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(tcp, c.addr, c.config)
	if err != nil {
		stop()
		return nil, err
	}
	conn := ssh.NewClient(sc, chans, reqs)
	err = probe(conn)
	if !stop() {
		// The attempt's context ended and closed the socket under us.
		return nil, errors.Join(fmt.Errorf("ssh: login attempt: %w", context.Cause(actx)), conn.Close())
	}
	if err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	return conn, nil
}

// probe runs "true" in a fresh session.
func probe(conn *ssh.Client) error {
	s, err := conn.NewSession()
	if err != nil {
		return fmt.Errorf("ssh: open session: %w", err)
	}
	err = s.Run("true")
	if cerr := s.Close(); cerr != nil && !errors.Is(cerr, io.EOF) && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ssh: first command: %w", err)
	}
	return nil
}

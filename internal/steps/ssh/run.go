package ssh

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"gitlab.com/imgform/imgform/internal/debuglog"
)

// RunOptions says how to run a command.
type RunOptions struct {
	// Env is exported to the command. Values may hold anything; names must be shell variable names.
	Env map[string]string
	// Sudo runs the command as root through "sudo -n", which fails instead of prompting for a password.
	Sudo bool
	// Stdout and Stderr receive the command's output line by line as it comes; nil discards it.
	Stdout, Stderr io.Writer
	// Idempotent allows running the command again when the connection drops while it runs. Without it a
	// command is retried only when it provably never started.
	Idempotent bool
}

// runWrapper runs a script in a process group of its own and kills that group when its standard input
// ends. The script itself (the environment's exports and the command) comes first on standard input, as a
// line with its length in bytes and then the bytes, so that no value is on a command line: sudo logs the
// command lines it runs to the journal, which ships in the image, and every user in the guest can read a
// command line in ps. The child gets the script in an environment variable (readable only by its own user)
// and unsets it before running it.
//
// After the script, the input stays open: closing the session, or the connection breaking, ends it, so a
// cancelled or orphaned command dies with everything it started instead of running on unseen; sshd alone
// would only close its pipes. The command's own input is /dev/null: the pipe belongs to the wrapper. fd 3
// keeps the pipe for the watcher, since a shell without job control gives background jobs /dev/null as
// input. The exit status is the command's, 128+9 when it was killed, 125 when the script did not arrive
// whole (a cut connection must not run the first half of a command).
const runWrapper = `exec 3<&0
IFS= read -r n <&3 && [ "$n" -ge 0 ] 2>/dev/null || { echo 'imgform-run: no script on standard input' >&2; exit 125; }
s=$(head -c "$n" <&3; echo .)
s=${s%.}
[ "$(printf %s "$s" | wc -c)" -eq "$n" ] || { echo 'imgform-run: the script arrived incomplete' >&2; exit 125; }
run='s=$IMGFORM_SCRIPT; unset IMGFORM_SCRIPT; eval "$s"'
if command -v setsid >/dev/null 2>&1; then
  IMGFORM_SCRIPT=$s setsid sh -c "$run" </dev/null 3<&- &
else
  IMGFORM_SCRIPT=$s sh -c "$run" </dev/null 3<&- &
fi
pid=$!
unset s
{ cat <&3 >/dev/null 2>&1; kill -KILL -"$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; } >/dev/null 2>&1 &
watch=$!
exec 3<&-
wait "$pid"
rc=$?
kill "$watch" 2>/dev/null
exit "$rc"`

// GuestScripts is the text of what this package runs in the guest around every command (the wrapper and
// the sudo that goes outside it) and every upload. A step whose result is made by such commands puts it
// into its key (step.GuestCommandText), so that a change here never reuses results made the old way.
func GuestScripts() string {
	return strings.Join([]string{"sudo -n -- sh -c", runWrapper, uploadPrepare, uploadCommit}, "\n")
}

// commandLine returns what is sent to sshd, which holds no part of the command or its environment, and
// the script that goes to the wrapper's standard input: the environment exports and cmd. sudo goes outside
// the wrapper so that the wrapper can kill the root processes it started.
func commandLine(cmd string, opts RunOptions) (line string, script []byte, err error) {
	exports, err := exportLines(opts.Env)
	if err != nil {
		return "", nil, err
	}
	line = "sh -c " + Quote(runWrapper) + " imgform-run"
	if opts.Sudo {
		line = "sudo -n -- " + line
	}
	body := exports + cmd
	return line, fmt.Appendf(nil, "%d\n%s", len(body), body), nil
}

// Run runs cmd (a shell script) in the guest and returns its exit code; err is set only when the exit code
// is unknown: the context ended (the command was killed), the connection broke where a retry was not safe,
// or the client could not reconnect. A connection that fails before the command starts is re-dialed and
// the command sent again, up to a few times.
//
// The script reaches the command in an environment variable, where Linux limits one string to 128 KiB:
// upload a longer script first and run the file.
func (c *Client) Run(ctx context.Context, cmd string, opts RunOptions) (int, error) {
	line, script, err := commandLine(cmd, opts)
	if err != nil {
		return -1, err
	}
	out := newLineWriters(opts.Stdout, opts.Stderr)
	for attempt := 0; ; attempt++ {
		conn, err := c.connection(ctx)
		if err != nil {
			return -1, err
		}
		code, err := execSession(ctx, conn, session{cmd: line, prefix: script, stdout: out.stdout, stderr: out.stderr})
		if ferr := out.flush(); ferr != nil && err == nil {
			return code, fmt.Errorf("ssh: write output: %w", ferr)
		}
		if err == nil || ctx.Err() != nil || !isConnLost(err) {
			return code, err
		}
		c.drop(conn)
		if mayHaveRun(err) && !opts.Idempotent {
			return -1, fmt.Errorf("%w; not run again because it may have had effects (RunOptions.Idempotent)", err)
		}
		if attempt >= maxReconnects {
			return -1, fmt.Errorf("ssh: gave up after %d reconnects: %w", attempt, err)
		}
		debuglog.Debugf("ssh", "%v; reconnecting", err)
		if c.opts.logf != nil {
			c.opts.logf("ssh: %v; reconnecting", err)
		}
	}
}

// Output runs cmd like Run and returns its standard output; standard error goes to opts.Stderr.
func (c *Client) Output(ctx context.Context, cmd string, opts RunOptions) ([]byte, int, error) {
	var b bytes.Buffer
	opts.Stdout = &b
	code, err := c.Run(ctx, cmd, opts)
	return b.Bytes(), code, err
}

// lineWriters turn the session's output chunks into whole lines, so that two streams sharing one writer
// (a progress log) never interleave inside a line.
type lineWriters struct {
	mu             sync.Mutex
	stdout, stderr *lineWriter
}

func newLineWriters(stdout, stderr io.Writer) *lineWriters {
	lw := &lineWriters{}
	lw.stdout = &lineWriter{mu: &lw.mu, w: stdout}
	lw.stderr = &lineWriter{mu: &lw.mu, w: stderr}
	return lw
}

// flush writes what is left of an unterminated last line.
func (lw *lineWriters) flush() error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	err1 := lw.stdout.flushLocked()
	err2 := lw.stderr.flushLocked()
	if err1 != nil {
		return err1
	}
	return err2
}

type lineWriter struct {
	mu  *sync.Mutex
	w   io.Writer // nil discards
	buf []byte
	err error // the first write error; later output is dropped
}

func (l *lineWriter) Write(p []byte) (int, error) {
	if l.w == nil {
		return len(p), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if i := bytes.LastIndexByte(l.buf, '\n'); i >= 0 && l.err == nil {
		_, l.err = l.w.Write(l.buf[:i+1])
		l.buf = append(l.buf[:0], l.buf[i+1:]...)
	}
	if l.err != nil {
		l.buf = l.buf[:0]
	}
	// Never fail the session's copy: a broken log must not kill the command. The error is reported by flush.
	return len(p), nil
}

func (l *lineWriter) flushLocked() error {
	if l.w != nil && len(l.buf) > 0 && l.err == nil {
		_, l.err = l.w.Write(l.buf)
	}
	l.buf = l.buf[:0]
	err := l.err
	l.err = nil
	return err
}

package step

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// CommandFor returns the shell command of a provisioner's or test's script or inline commands ("" when it
// has neither). A script is uploaded to /tmp/imgform-<kind>-<name> first (checked against the content it
// was keyed with, see UploadChecked), run by path so that its own shebang decides the interpreter, and
// removed.
func CommandFor(ctx context.Context, sh Shell, shared *Shared, configDir, kind, name, script string, inline []string) (string, error) {
	switch {
	case script != "":
		remote := "/tmp/imgform-" + kind + "-" + sanitize(name)
		local := script
		if !filepath.IsAbs(local) {
			local = filepath.Join(configDir, local)
		}
		if err := UploadChecked(ctx, sh, shared, local, remote, ssh.UploadOptions{Mode: 0o700}); err != nil {
			return "", fmt.Errorf("upload of script %s: %w", script, err)
		}
		return fmt.Sprintf(scriptCommand, ssh.Quote(remote), ssh.Quote(remote)), nil
	case len(inline) > 0:
		return inlinePrelude + strings.Join(inline, "\n"), nil
	}
	return "", nil
}

// What CommandFor puts around a script and before inline commands: a change of either changes what the
// commands do (set -e stops at the first failing line), so both are in GuestCommandText.
const (
	scriptCommand = "%s; rc=$?; rm -f %s; exit $rc"
	inlinePrelude = "set -e\n"
)

// GuestCommandText is every text imgform wraps around the commands of a provisioner or test in the guest
// (CommandFor's and the ssh package's): the keys of those steps hold it, like the text of any script
// imgform runs in the guest, so that a change of it builds their results again instead of reusing the old.
func GuestCommandText() string {
	return scriptCommand + "\n" + inlinePrelude + ssh.GuestScripts()
}

// UploadChecked uploads a local file, hashing what it sends, and fails when that is not the content the
// step's key was made from (shared knows it; nil shared checks nothing). The file is read once, so what
// is checked is what the guest got.
func UploadChecked(ctx context.Context, sh Shell, shared *Shared, local, dest string, opts ssh.UploadOptions) (err error) {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	h := sha256.New()
	if err := sh.Upload(ctx, io.TeeReader(f, h), dest, opts); err != nil {
		return err
	}
	return shared.CheckFile(local, hex.EncodeToString(h.Sum(nil)))
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, name)
}

// LineTail passes output on line by line (Emit may be nil) and keeps the last lines for error messages.
type LineTail struct {
	Emit func(string)

	mu    sync.Mutex
	buf   []byte
	lines []string
}

var _ io.Writer = (*LineTail)(nil)

// tailLines is how many lines an error message shows; maxLine is the longest line passed on whole.
const (
	tailLines = 20
	maxLine   = 64 << 10
)

func (t *LineTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	for {
		i, skip := bytes.IndexByte(t.buf, '\n'), 1
		if i < 0 && len(t.buf) > maxLine {
			// A command that writes without newlines (a progress bar, binary output) is passed on in
			// pieces, so that the buffer stays bounded and its search linear.
			i, skip = maxLine, 0
		}
		if i < 0 {
			break
		}
		line := strings.TrimRight(string(t.buf[:i]), "\r")
		t.buf = t.buf[i+skip:]
		if t.Emit != nil {
			t.Emit(line)
		}
		t.lines = append(t.lines, line)
		if len(t.lines) > tailLines {
			t.lines = t.lines[len(t.lines)-tailLines:]
		}
	}
	return len(p), nil
}

// Tail returns the last lines, with a last line that has no newline yet.
func (t *LineTail) Tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.buf) > 0 {
		lines = append(lines, string(t.buf))
	}
	return strings.Join(lines, "\n")
}

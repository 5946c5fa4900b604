package ssh

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// UploadOptions says how an uploaded file ends up in the guest.
type UploadOptions struct {
	// Mode is the file's permission bits; 0 means 0644.
	Mode os.FileMode
	// Owner is "user" or "user:group" for chown; empty keeps the uploading user (root when sudo was needed).
	Owner string
	// Sudo forces root. Without it root is used only when needed: an Owner is set, the folder is not
	// writable by the login user, or the destination exists and belongs to someone else.
	Sudo bool
}

// uploadPrepare picks whether root is needed and writes standard input to the temporary file "$2" in the
// destination's folder, with umask 077 so a half-written secret is never readable, then prints "sudo" or
// "user" and the temporary file's SHA-256. $1 is the destination, $3 the owner, $4 "1" to force sudo.
const uploadPrepare = `dest=$1 tmp=$2 owner=$3 force=$4
dir=$(dirname -- "$dest")
if [ "$force" = 1 ] || [ -n "$owner" ] || [ ! -w "$dir" ] || { [ -e "$dest" ] && [ ! -O "$dest" ]; }; then
  as=sudo
  sudo -n -- sh -c 'umask 077 && cat >"$1"' sh "$tmp" || exit
  sum=$(sudo -n -- sha256sum -- "$tmp") || exit
else
  as=user
  (umask 077 && cat >"$tmp") || exit
  sum=$(sha256sum -- "$tmp") || exit
fi
printf '%s %s\n' "$as" "${sum%% *}"`

// uploadCommit sets mode and owner on the temporary file "$2" and renames it over "$1" (same folder, so
// the rename is atomic: readers see the old file or the whole new one). $3 is the mode, $4 the owner, $5
// "sudo" or "user" as uploadPrepare chose.
const uploadCommit = `dest=$1 tmp=$2 mode=$3 owner=$4 as=$5
run() { if [ "$as" = sudo ]; then sudo -n -- "$@"; else "$@"; fi; }
run chmod -- "$mode" "$tmp" && { [ -z "$owner" ] || run chown -- "$owner" "$tmp"; } && run mv -f -- "$tmp" "$dest" && exit 0
rc=$?
run rm -f -- "$tmp"
exit "$rc"`

// UploadFile copies the local file at localPath to remotePath in the guest (see Upload).
func (c *Client) UploadFile(ctx context.Context, localPath, remotePath string, opts UploadOptions) (err error) {
	f, err := os.Open(localPath)
	if err != nil {
		return fmt.Errorf("ssh: upload: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("ssh: upload: %w", cerr)
		}
	}()
	return c.Upload(ctx, f, remotePath, opts)
}

// Upload streams content to remotePath in the guest. The data goes to a temporary file in the destination's
// folder first; its SHA-256 is checked against what was sent (a dropped connection would otherwise leave a
// truncated file that looks complete), then mode and owner are set and the file is renamed into place. So
// remotePath holds either its old content or the whole new file, never a part. Root is used through sudo
// when the destination needs it (see UploadOptions).
func (c *Client) Upload(ctx context.Context, content io.Reader, remotePath string, opts UploadOptions) error {
	if remotePath == "" || strings.HasSuffix(remotePath, "/") {
		return fmt.Errorf("ssh: upload: destination %q is not a file path", remotePath)
	}
	mode := opts.Mode.Perm()
	if opts.Mode == 0 {
		mode = 0o644
	}
	tmp, err := tempName(remotePath)
	if err != nil {
		return err
	}
	force := "0"
	if opts.Sudo {
		force = "1"
	}
	h := sha256.New()
	var out, errOut bytes.Buffer
	code, err := c.stream(ctx, shCommand(uploadPrepare, remotePath, tmp, opts.Owner, force), io.TeeReader(content, h), &out, &errOut)
	if err != nil || code != 0 {
		return errors.Join(uploadError("write", remotePath, code, err, errOut.String()), c.removeTemp(ctx, tmp))
	}
	fields := strings.Fields(out.String())
	want := hex.EncodeToString(h.Sum(nil))
	if len(fields) != 2 || fields[1] != want {
		return errors.Join(fmt.Errorf("ssh: upload %s: the guest received other bytes than were sent (%q, want sha256 %s)",
			remotePath, strings.TrimSpace(out.String()), want), c.removeTemp(ctx, tmp))
	}
	errOut.Reset()
	code, err = c.Run(ctx, shCommand(uploadCommit, remotePath, tmp, fmt.Sprintf("%04o", mode), opts.Owner, fields[0]),
		RunOptions{Stderr: &errOut})
	if err != nil || code != 0 {
		return errors.Join(uploadError("install", remotePath, code, err, errOut.String()), c.removeTemp(ctx, tmp))
	}
	return nil
}

// stream runs cmd with content as its standard input; it retries only when the command never started, as
// the content cannot be read twice.
func (c *Client) stream(ctx context.Context, cmd string, content io.Reader, stdout, stderr io.Writer) (int, error) {
	for attempt := 0; ; attempt++ {
		conn, err := c.connection(ctx)
		if err != nil {
			return -1, err
		}
		code, err := execSession(ctx, conn, session{cmd: cmd, stdin: content, stdout: stdout, stderr: stderr})
		if err == nil || ctx.Err() != nil || !isConnLost(err) {
			return code, err
		}
		c.drop(conn)
		if mayHaveRun(err) || attempt >= maxReconnects {
			return -1, err
		}
	}
}

// removeTemp deletes a leftover temporary file, also when ctx has ended, with a short deadline of its own.
func (c *Client) removeTemp(ctx context.Context, tmp string) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	code, err := c.Run(rctx, "rm -f -- "+Quote(tmp)+" 2>/dev/null || sudo -n rm -f -- "+Quote(tmp), RunOptions{Idempotent: true})
	if err != nil {
		return fmt.Errorf("ssh: remove temporary file %s: %w", tmp, err)
	}
	if code != 0 {
		return fmt.Errorf("ssh: remove temporary file %s: exit code %d", tmp, code)
	}
	return nil
}

func uploadError(stage, path string, code int, err error, stderr string) error {
	if err != nil {
		return fmt.Errorf("ssh: upload %s (%s): %w", path, stage, err)
	}
	return fmt.Errorf("ssh: upload %s (%s): exit code %d: %s", path, stage, code, strings.TrimSpace(stderr))
}

// tempName returns a fresh hidden name next to remotePath.
func tempName(remotePath string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ssh: upload: %w", err)
	}
	dir := "."
	if i := strings.LastIndexByte(remotePath, '/'); i >= 0 {
		dir = remotePath[:i]
		if dir == "" {
			dir = "/"
		}
	}
	return strings.TrimSuffix(dir, "/") + "/.imgform-upload." + hex.EncodeToString(b[:]), nil
}

// shCommand returns a command line that runs script with the given positional parameters.
func shCommand(script string, args ...string) string {
	var b strings.Builder
	b.WriteString("sh -c ")
	b.WriteString(Quote(script))
	b.WriteString(" sh")
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(Quote(a))
	}
	return b.String()
}

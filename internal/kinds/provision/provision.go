// Package provision is the guest step of one provisioner block: files uploaded, then its script or inline
// commands run over SSH in the running guest, their output streamed.
package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// Kind is the provision kind.
type Kind struct{}

var (
	_ step.GuestKind  = Kind{}
	_ step.Downloader = Kind{}
)

func (Kind) Name() string      { return "provision" }
func (Kind) Version() int      { return 1 }
func (Kind) Class() step.Class { return step.Guest }

// Instances: one step per provisioner block, in order.
func (Kind) Instances(img *config.Image) []step.Instance {
	out := make([]step.Instance, len(img.Provisioners))
	for i, p := range img.Provisioners {
		out[i] = step.Instance{Name: p.Name, Config: p}
	}
	return out
}

func provisioner(s *step.Step) *config.Provisioner { return s.Config.(*config.Provisioner) }

// RefreshEvery is the block's refresh_every (step.Refresher); it is not in the key: a rebuild it asks for
// changes the key through the engine's rebuild token.
func (Kind) RefreshEvery(s *step.Step) time.Duration { return provisioner(s).RefreshEvery }

// Key: the layer before, the block (commands, environment, sudo, uploads), the content of its script and
// uploaded files, and the text imgform wraps around its commands and uploads in the guest.
func (Kind) Key(ctx context.Context, _ *step.KeyContext, s *step.Step, b *step.KeyBuilder) error {
	b.Step(s.Parent)
	p := provisioner(s)
	type upload struct {
		Source      string `json:"source,omitempty"`
		Content     string `json:"content,omitempty"`
		HasContent  bool   `json:"has_content,omitempty"`
		Destination string `json:"destination"`
		Mode        string `json:"mode,omitempty"`
		Owner       string `json:"owner,omitempty"`
	}
	conf := struct {
		Inline      []string          `json:"inline,omitempty"`
		Script      string            `json:"script,omitempty"`
		Environment map[string]string `json:"environment,omitempty"`
		Sudo        bool              `json:"sudo"`
		Uploads     []upload          `json:"uploads,omitempty"`
		Scripts     []string          `json:"scripts,omitempty"`
		// Exit codes other than 0 and retries can turn a failure into a result; pause_before cannot.
		ValidExitCodes []int `json:"valid_exit_codes,omitempty"`
		MaxRetries     int   `json:"max_retries,omitempty"`
		// A reboot changes what the layer holds (a new boot); a tolerated disconnect turns a failure
		// into a result.
		ExpectDisconnect bool `json:"expect_disconnect,omitempty"`
		Reboot           bool `json:"reboot,omitempty"`
		// The guest files copied out are kept with the layer; where apply writes them is not in the key
		// (a new destination needs no build).
		Downloads []string `json:"downloads,omitempty"`
	}{Inline: p.Inline, Script: p.Script, Environment: p.Environment, Sudo: p.Sudo, Scripts: p.Scripts, MaxRetries: p.MaxRetries,
		ExpectDisconnect: p.ExpectDisconnect, Reboot: p.Reboot}
	if !slices.Equal(validCodes(p), []int{0}) {
		conf.ValidExitCodes = validCodes(p)
	}
	for _, u := range p.Uploads {
		conf.Uploads = append(conf.Uploads, upload{u.Source, u.Content, u.HasContent, u.Destination, u.Mode, u.Owner})
	}
	for _, d := range p.Downloads {
		conf.Downloads = append(conf.Downloads, d.Source)
	}
	if err := b.Config("provisioner", conf); err != nil {
		return err
	}
	b.Script("command wrapper", step.GuestCommandText())
	if err := b.File(ctx, "script", p.Script); err != nil {
		return fmt.Errorf("provisioner %q: %w", p.Name, err)
	}
	for _, sc := range p.Scripts {
		if err := b.File(ctx, "script", sc); err != nil {
			return fmt.Errorf("provisioner %q: %w", p.Name, err)
		}
	}
	for _, u := range p.Uploads {
		if err := b.File(ctx, "file", u.Source); err != nil {
			return fmt.Errorf("provisioner %q: %w", p.Name, err)
		}
	}
	b.Variables(p.VarRefs)
	return nil
}

// Downloads are the provisioner's file blocks with direction = "download", kept in its layer's object as
// download-0, download-1, ...
func (Kind) Downloads(s *step.Step) []step.Download {
	p := provisioner(s)
	out := make([]step.Download, len(p.Downloads))
	for i, d := range p.Downloads {
		out[i] = step.Download{File: downloadFile(i), Source: d.Source, Path: d.Path()}
	}
	return out
}

func downloadFile(i int) string { return fmt.Sprintf("download-%d", i) }

// download copies the guest file src into the file name kept with the step's layer (GuestEnv.Keep), read
// with sudo when the provisioner has it, as its uploads are written.
func download(ctx context.Context, g *step.GuestEnv, p *config.Provisioner, name, src string) error {
	path, err := g.Keep(name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	stderr := &step.LineTail{Emit: func(string) {}}
	code, err := g.Shell.Run(ctx, "cat -- "+ssh.Quote(src), ssh.RunOptions{Sudo: p.Sudo, Stdout: f, Stderr: stderr})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && code != 0 {
		err = fmt.Errorf("cat exited with status %d: %s", code, g.Redact(strings.TrimSpace(stderr.Tail())))
	}
	if err != nil {
		return err
	}
	if fi, err := os.Stat(path); err == nil {
		g.Output(fmt.Sprintf("downloaded %s (%d bytes)", src, fi.Size()))
	}
	return nil
}

// RunGuest uploads the files, then runs the script or the inline commands, streaming their output, then
// copies the downloads out of the guest, and reboots it when asked.
func (Kind) RunGuest(ctx context.Context, g *step.GuestEnv, s *step.Step) error {
	p := provisioner(s)
	if p.PauseBefore > 0 {
		g.Output(fmt.Sprintf("pause_before: waiting %s", p.PauseBefore))
		if !sleep(ctx, p.PauseBefore) {
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	for _, u := range p.Uploads {
		opts := ssh.UploadOptions{Owner: u.Owner, Sudo: p.Sudo}
		if u.Mode != "" {
			m, err := strconv.ParseUint(u.Mode, 8, 32)
			if err != nil {
				return fmt.Errorf("file %s: mode %q: %w", u.Destination, u.Mode, err)
			}
			opts.Mode = os.FileMode(m) & os.ModePerm
		}
		var err error
		if u.HasContent {
			err = g.Shell.Upload(ctx, strings.NewReader(u.Content), u.Destination, opts)
		} else {
			src := u.Source
			if !filepath.IsAbs(src) {
				src = filepath.Join(g.ConfigDir, src)
			}
			err = step.UploadChecked(ctx, g.Shell, g.Shared, src, u.Destination, opts)
		}
		if err != nil {
			return fmt.Errorf("upload to %s: %w", u.Destination, err)
		}
	}
	if len(p.Scripts) == 0 {
		if err := runCommands(ctx, g, p, p.Script, p.Inline); err != nil {
			return err
		}
	}
	for _, sc := range p.Scripts {
		if err := runCommands(ctx, g, p, sc, nil); err != nil {
			return fmt.Errorf("script %s: %w", sc, err)
		}
	}
	for i, d := range p.Downloads {
		if err := download(ctx, g, p, downloadFile(i), d.Source); err != nil {
			return fmt.Errorf("download of %s: %w", d.Source, err)
		}
	}
	if p.Reboot {
		if err := reboot(ctx, g); err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("reboot: the guest did not come back within the provisioner's timeout of %s: %w", p.Timeout, err)
			}
			return fmt.Errorf("reboot: %w", err)
		}
	}
	return nil
}

// bootIDFile changes on every boot of a Linux guest.
const bootIDFile = "/proc/sys/kernel/random/boot_id"

// reboot restarts the guest and waits until it is back: its boot ID differs from before (so the old
// system, whose sshd may still answer for a moment, is not taken for the new one), SSH answers with the
// host key pinned at the first boot, and systemd has finished starting units. The QEMU process, its disk
// layers and the session stay the same.
func reboot(ctx context.Context, g *step.GuestEnv) error {
	before, err := readBootID(ctx, g)
	if err != nil {
		return fmt.Errorf("reading the boot ID: %w", err)
	}
	g.Output("rebooting the guest")
	start := time.Now()
	// The connection usually drops before the exit status arrives: that is the reboot, not an error.
	code, err := g.Shell.Run(ctx, "systemctl reboot", ssh.RunOptions{Sudo: true})
	switch {
	case err != nil && !ssh.IsConnLost(err):
		return err
	case err == nil && code != 0:
		return fmt.Errorf("systemctl reboot exited with status %d", code)
	}
	for {
		id, err := readBootID(ctx, g)
		if err == nil && id != before {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sleep(ctx, time.Second)
	}
	// "running" or "degraded" both mean the boot is over; only waiting matters here.
	if _, err := g.Shell.Run(ctx, "systemctl is-system-running --wait >/dev/null 2>&1 || true", ssh.RunOptions{Idempotent: true}); err != nil {
		return err
	}
	g.Output(fmt.Sprintf("the guest is back after %s", time.Since(start).Round(100*time.Millisecond)))
	return nil
}

// readBootID returns the guest's boot ID; the ssh client reconnects on its own when the connection broke.
func readBootID(ctx context.Context, g *step.GuestEnv) (string, error) {
	var out strings.Builder
	code, err := g.Shell.Run(ctx, "cat "+bootIDFile, ssh.RunOptions{Stdout: &out, Idempotent: true})
	if err == nil && code != 0 {
		err = fmt.Errorf("cat %s exited with status %d", bootIDFile, code)
	}
	return strings.TrimSpace(out.String()), err
}

// retryDelay is the pause between two attempts of max_retries.
var retryDelay = 2 * time.Second

// runCommands runs one script or the inline commands, again up to max_retries times while they fail: an
// exit status outside valid_exit_codes, or a run that did not finish (a lost connection). A script is
// uploaded again for each attempt, since its command removes it.
func runCommands(ctx context.Context, g *step.GuestEnv, p *config.Provisioner, script string, inline []string) error {
	for attempt := 0; ; attempt++ {
		cmd, err := step.CommandFor(ctx, g.Shell, g.Shared, g.ConfigDir, "provision", p.Name, script, inline)
		if err != nil || cmd == "" {
			return err
		}
		out := &step.LineTail{Emit: g.Output}
		code, err := g.Shell.Run(ctx, cmd, ssh.RunOptions{Env: p.Environment, Sudo: p.Sudo, Stdout: out, Stderr: out})
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("timed out after %s (raise the provisioner's timeout)\n%s", p.Timeout, g.Redact(out.Tail()))
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil && slices.Contains(validCodes(p), code):
			return nil
		case err != nil && p.ExpectDisconnect && ssh.IsConnLost(err):
			// Packer's expect_disconnect: the commands took the connection down (a reboot, a network
			// restart). Wait until the guest answers again, so that the next step finds it.
			g.Output("the connection was lost, as expect_disconnect allows; waiting for the guest to answer again")
			return waitForGuest(ctx, g)
		case err == nil:
			err = fmt.Errorf("exited with status %d%s; last output:\n%s", code, validHint(p), g.Redact(out.Tail()))
		}
		if attempt >= p.MaxRetries {
			return err
		}
		why, _, _ := strings.Cut(firstLine(err.Error()), "; last output:")
		g.Output(fmt.Sprintf("attempt %d of %d failed (%s); trying again in %s", attempt+1, p.MaxRetries+1, why, retryDelay))
		sleep(ctx, retryDelay)
	}
}

// waitForGuest runs a no-op until it succeeds: the ssh client reconnects (with the pinned host key) as
// soon as the guest's sshd accepts connections.
func waitForGuest(ctx context.Context, g *step.GuestEnv) error {
	for {
		code, err := g.Shell.Run(ctx, "true", ssh.RunOptions{Idempotent: true})
		if err == nil && code == 0 {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the guest did not answer again: %w", ctx.Err())
		}
		sleep(ctx, time.Second)
	}
}

// sleep waits for d or until ctx ends, and tells whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// validCodes is valid_exit_codes, [0] when not given.
func validCodes(p *config.Provisioner) []int {
	if len(p.ValidExitCodes) == 0 {
		return []int{0}
	}
	return p.ValidExitCodes
}

func validHint(p *config.Provisioner) string {
	if slices.Equal(validCodes(p), []int{0}) {
		return ""
	}
	return fmt.Sprintf(" (valid_exit_codes = %v)", validCodes(p))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

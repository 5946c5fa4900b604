// Package provision is the guest step of one provisioner block: files uploaded, then its script or inline
// commands run over SSH in the running guest, their output streamed.
package provision

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// Kind is the provision kind.
type Kind struct{}

var _ step.GuestKind = Kind{}

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
	}{Inline: p.Inline, Script: p.Script, Environment: p.Environment, Sudo: p.Sudo}
	for _, u := range p.Uploads {
		conf.Uploads = append(conf.Uploads, upload{u.Source, u.Content, u.HasContent, u.Destination, u.Mode, u.Owner})
	}
	if err := b.Config("provisioner", conf); err != nil {
		return err
	}
	b.Script("command wrapper", step.GuestCommandText())
	if err := b.File(ctx, "script", p.Script); err != nil {
		return fmt.Errorf("provisioner %q: %w", p.Name, err)
	}
	for _, u := range p.Uploads {
		if err := b.File(ctx, "file", u.Source); err != nil {
			return fmt.Errorf("provisioner %q: %w", p.Name, err)
		}
	}
	b.Variables(p.VarRefs)
	return nil
}

// RunGuest uploads the files, then runs the script or the inline commands, streaming their output.
func (Kind) RunGuest(ctx context.Context, g *step.GuestEnv, s *step.Step) error {
	p := provisioner(s)
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
	cmd, err := step.CommandFor(ctx, g.Shell, g.Shared, g.ConfigDir, "provision", p.Name, p.Script, p.Inline)
	if err != nil || cmd == "" {
		return err
	}
	out := &step.LineTail{Emit: g.Output}
	code, err := g.Shell.Run(ctx, cmd, ssh.RunOptions{Env: p.Environment, Sudo: p.Sudo, Stdout: out, Stderr: out})
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out after %s (raise the provisioner's timeout)\n%s", p.Timeout, g.Redact(out.Tail()))
		}
		return err
	}
	if code != 0 {
		return fmt.Errorf("exited with status %d; last output:\n%s", code, g.Redact(out.Tail()))
	}
	return nil
}

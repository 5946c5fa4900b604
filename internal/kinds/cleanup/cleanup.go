// Package cleanup is the last guest step of an image: the script of internal/steps/cleanup removes what
// must not ship (the build user and key, cloud-init's instance state, machine-id, host keys, logs), hands
// the network over to systemd-networkd for the image's network blocks, and powers the guest off.
package cleanup

import (
	"context"
	"fmt"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/step"
	cleanuplib "gitlab.com/imgform/imgform/internal/steps/cleanup"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// Kind is the cleanup kind.
type Kind struct{}

var (
	_ step.GuestKind  = Kind{}
	_ step.PowerOffer = Kind{}
	_ step.Explainer  = Kind{}
)

func (Kind) Name() string                            { return "cleanup" }
func (Kind) Class() step.Class                       { return step.Guest }
func (Kind) Instances(*config.Image) []step.Instance { return []step.Instance{{}} }
func (Kind) PowersOff() bool                         { return true }

// Version 2: the network handoff to systemd-networkd. The script's text is in the key as well, so a
// change of what it does needs no bump.
func (Kind) Version() int { return 2 }

func scriptOf(img *config.Image) string {
	return cleanuplib.Script(cleanuplib.Options{Cleanup: img.Cleanup, BuildUser: step.BuildUserName, Networks: img.Networks})
}

// Key: the layer before, the cleanup block and the full text of the script that runs in the guest.
func (Kind) Key(_ context.Context, _ *step.KeyContext, s *step.Step, b *step.KeyBuilder) error {
	b.Step(s.Parent)
	c := s.Image.Cleanup
	if err := b.Config("cleanup", struct {
		CloudInit, MachineID, SSHHostKeys, Resolved, Logs, AptLists, Trim, ZeroFreeSpace bool
	}{c.CloudInit, c.MachineID, c.SSHHostKeys, c.Resolved, c.Logs, c.AptLists, c.Trim, c.ZeroFreeSpace}); err != nil {
		return err
	}
	b.Script("cleanup script", scriptOf(s.Image))
	b.Script("command wrapper", step.GuestCommandText()) // the script runs through the ssh package's wrapper
	b.Variables(c.VarRefs, s.Image.NetworkVarRefs())
	return nil
}

// Explain words the script input.
func (Kind) Explain(in step.Input) string {
	if in.Name == "cleanup script" {
		return "the cleanup script changed (cleanup or network blocks, or imgform's cleanup)"
	}
	return ""
}

// RunGuest runs the cleanup script, which powers the guest off at its end; the layer is final once QEMU
// has exited.
func (Kind) RunGuest(ctx context.Context, g *step.GuestEnv, s *step.Step) error {
	out := &step.LineTail{Emit: g.Output}
	code, err := g.Shell.Run(ctx, scriptOf(s.Image), ssh.RunOptions{Sudo: true, Stdout: out, Stderr: out})
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("cleanup exited with status %d; last output:\n%s", code, g.Redact(out.Tail()))
	}
	return nil
}

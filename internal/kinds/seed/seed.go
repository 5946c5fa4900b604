// Package seed is the step kind that makes an image's cidata ISO (user-data with a fresh build key,
// meta-data) through internal/steps/seed.
package seed

import (
	"context"
	"fmt"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	seedlib "gitlab.com/imgform/imgform/internal/steps/seed"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// Kind is the seed kind.
type Kind struct{}

var (
	_ step.HostKind  = Kind{}
	_ step.Explainer = Kind{}
)

func (Kind) Name() string                            { return "seed" }
func (Kind) Version() int                            { return seedlib.FormatVersion }
func (Kind) Class() step.Class                       { return step.Prepare }
func (Kind) Instances(*config.Image) []step.Instance { return []step.Instance{{}} }

// buildKeyPubFile holds the public half of the build key next to the seed.
const buildKeyPubFile = "build_key.pub"

// placeholderBuildUser stands for the ephemeral build key in the key: the real key is random per build and
// must not change the key (see step/key.go).
var placeholderBuildUser = &config.BuildUser{Name: step.BuildUserName, AuthorizedKey: "ssh-ed25519 <ephemeral build key>"}

// Key: the rendered user-data (with a placeholder for the build key) and the hostname, which cloud-init
// writes to /etc/hostname.
func (Kind) Key(_ context.Context, _ *step.KeyContext, s *step.Step, b *step.KeyBuilder) error {
	ud, err := s.Image.RenderUserData(placeholderBuildUser)
	if err != nil {
		return fmt.Errorf("image %q: rendering user-data: %w", s.Image.Name, err)
	}
	b.Add(step.InputConfig, "user-data", ud)
	b.Add(step.InputConfig, "hostname", []byte(seedlib.HostnameFor(s.Image.Name)))
	b.Variables(s.Image.Userdata.VarRefs, s.Image.NetworkVarRefs())
	return nil
}

// Explain words the user-data input.
func (Kind) Explain(in step.Input) string {
	if in.Name == "user-data" {
		return "the rendered user-data changed (userdata or network blocks)"
	}
	return ""
}

// Run makes the cidata ISO with a fresh build key. The key is random, so the ISO differs from build to
// build, but the step key does not: the key belongs to the layer chain built from this seed.
func (Kind) Run(ctx context.Context, env *step.Env, s *step.Step) (step.Result, error) {
	_, built, err := env.Store.GetOrBuild(ctx, s.Key, state.Info{Kind: s.Addr.Kind, Image: s.Image.Name, Step: s.Addr.ID()},
		env.LockOptions(fmt.Sprintf("seed of image %s", s.Image.Name)),
		func(ctx context.Context, w *state.Writer) error {
			key, err := ssh.GenerateKey()
			if err != nil {
				return err
			}
			priv, pub := key.PrivatePEM(), key.AuthorizedKey()
			ud, err := s.Image.RenderUserData(&config.BuildUser{Name: step.BuildUserName, AuthorizedKey: pub})
			if err != nil {
				return err
			}
			md, err := seedlib.MetaData(InstanceID(s), seedlib.HostnameFor(s.Image.Name))
			if err != nil {
				return err
			}
			iso, err := w.Path(step.SeedFile)
			if err != nil {
				return err
			}
			if err := seedlib.Build(ctx, seedlib.Files{UserData: ud, MetaData: md}, iso); err != nil {
				return err
			}
			if err := w.WriteFile(step.BuildKeyFile, priv, 0o600); err != nil {
				return err
			}
			return w.WriteFile(buildKeyPubFile, []byte(pub+"\n"), 0o644)
		})
	return step.Result{Built: built}, err
}

// InstanceID is stable for a seed key: a build that resumes from a cached layer boots with the same
// instance, so cloud-init does not redo its per-instance work (new host keys, users).
func InstanceID(seedStep *step.Step) string { return "imgform-" + seedStep.Key.Short() }

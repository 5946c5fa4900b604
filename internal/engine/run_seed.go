package engine

import (
	"context"
	"fmt"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/steps/seed"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// BuildKeyPubFile holds the public half of the build key next to the seed.
const BuildKeyPubFile = "build_key.pub"

// runSeed makes the cidata ISO with a fresh build key. The key is random, so the ISO differs from build to
// build, but the step key does not (keys.go): the key belongs to the layer chain built from this seed.
// built is false when another apply made the seed while this one waited for the lock.
func (a *applier) runSeed(ctx context.Context, sp *StepPlan) (built bool, err error) {
	s := sp.step
	_, built, err = a.e.Store.GetOrBuild(ctx, s.Key, state.Info{Kind: string(KindSeed), Image: s.Image.Name, Step: s.ID},
		a.lockOptions(fmt.Sprintf("seed of image %s", s.Image.Name)),
		func(ctx context.Context, w *state.Writer) error {
			key, err := ssh.GenerateKey()
			if err != nil {
				return err
			}
			priv, pub := key.PrivatePEM(), key.AuthorizedKey()
			ud, err := s.Image.RenderUserData(&config.BuildUser{Name: BuildUserName, AuthorizedKey: pub})
			if err != nil {
				return err
			}
			md, err := seed.MetaData(instanceID(s), hostname(s.Image.Name))
			if err != nil {
				return err
			}
			iso, err := w.Path(SeedFile)
			if err != nil {
				return err
			}
			if err := seed.Build(ctx, seed.Files{UserData: ud, MetaData: md}, iso); err != nil {
				return err
			}
			if err := w.WriteFile(BuildKeyFile, priv, 0o600); err != nil {
				return err
			}
			return w.WriteFile(BuildKeyPubFile, []byte(pub+"\n"), 0o644)
		})
	return built, err
}

// instanceID is stable for a seed key: a build that resumes from a cached layer boots with the same
// instance, so cloud-init does not redo its per-instance work (new host keys, users).
func instanceID(seedStep *Step) string { return "imgform-" + seedStep.Key.Short() }

// hostname is the image's name as a host name (seed.HostnameFor).
func hostname(image string) string { return seed.HostnameFor(image) }

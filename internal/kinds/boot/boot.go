// Package boot is the first guest step of an image: the guest session boots the base disk with the seed,
// logs in with the build key and waits for cloud-init; the layer holds what the first boot wrote.
package boot

import (
	"context"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/step"
)

// Kind is the boot kind.
type Kind struct{}

var (
	_ step.GuestKind = Kind{}
	_ step.Booter    = Kind{}
)

func (Kind) Name() string                            { return "boot" }
func (Kind) Version() int                            { return 1 }
func (Kind) Class() step.Class                       { return step.Guest }
func (Kind) Instances(*config.Image) []step.Instance { return []step.Instance{{}} }
func (Kind) StartsChain() bool                       { return true }

// Key: the base disk and the seed (the user-data cloud-init runs on this boot), the machine type, firmware
// and disk size (the disk grows to it on the first boot).
func (Kind) Key(_ context.Context, _ *step.KeyContext, s *step.Step, b *step.KeyBuilder) error {
	b.Step(s.Parent)
	for _, u := range s.Uses {
		b.Step(u)
	}
	m := s.Image.Machine
	b.Variables(m.VarRefs)
	return b.Config("machine", struct {
		Type     string `json:"type"`
		Firmware string `json:"firmware"`
		DiskSize int64  `json:"disk_size"`
	}{m.Type, m.Firmware, int64(m.DiskSize)})
}

// RunGuest has nothing left to do: booting, login and cloud-init happen when the session starts.
func (Kind) RunGuest(context.Context, *step.GuestEnv, *step.Step) error { return nil }

package engine

import (
	"context"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/step"
)

// The step names imgform shell accepts: as plan and records show them, with dots, as a label, or the bare
// name when it is unique.
func TestPickStep(t *testing.T) {
	steps := []*step.Step{
		{Addr: step.Address{Image: "img", Kind: "boot"}},
		{Addr: step.Address{Image: "img", Kind: "provision", Name: "motd"}},
		{Addr: step.Address{Image: "img", Kind: "provision", Name: "cleanup"}},
		{Addr: step.Address{Image: "img", Kind: "cleanup"}},
	}
	for sel, want := range map[string]int{
		"boot": 0, "img/boot": 0, "img.boot": 0,
		"provision/motd": 1, "provision.motd": 1, "img/provision/motd": 1, "img.provision.motd": 1,
		`provision "motd"`: 1, "motd": 1,
		"cleanup": 3, "provision/cleanup": 2,
	} {
		got, err := pickStep("img", steps, sel)
		if err != nil || got != steps[want] {
			t.Errorf("pickStep(%q) = %v, %v; want %s", sel, got, err, steps[want].Addr.ID())
		}
	}
	_, err := pickStep("img", steps, "nope")
	if err == nil || !strings.Contains(err.Error(), "boot, provision/motd, provision/cleanup, cleanup") {
		t.Errorf("unknown step: %v; want the guest steps listed", err)
	}
}

// GuestLayer finds the last cached guest layer and its seed, and says what is missing before a build.
func TestGuestLayer(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	e := te.engine(nil)
	if _, err := e.GuestLayer(context.Background(), te.load(), "", ""); err == nil || !strings.Contains(err.Error(), "run imgform apply first") {
		t.Errorf("before any apply: %v", err)
	}
	mustApply(t, te, te.load())
	gl, err := e.GuestLayer(context.Background(), te.load(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Release()
	if gl.Step.Kind != "cleanup" || gl.Layer == nil {
		t.Errorf("default step %s; want the last guest step, cleanup", gl.Step.ID())
	}
	if _, ok := gl.Seed.File(step.SeedFile); !ok {
		t.Errorf("the seed object %v has no %s", gl.Seed.Files, step.SeedFile)
	}
	if _, err := e.GuestLayer(context.Background(), te.load(), "other", ""); err == nil || !strings.Contains(err.Error(), `no image "other"`) {
		t.Errorf("unknown image: %v", err)
	}
}

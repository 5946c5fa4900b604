package cleanup

import (
	"context"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/step/steptest"
)

// The script that runs in the guest is the one whose text is in the key: a change of it changes the key
// even when the configuration stays the same.
func TestKeyHoldsTheScriptThatRuns(t *testing.T) {
	img := &config.Image{Name: "img", Cleanup: config.Cleanup{Logs: true}}
	parent := &step.Step{Addr: step.Address{Image: "img", Kind: "boot"}, Key: state.Key{1}}
	s := &step.Step{Addr: step.Address{Image: "img", Kind: "cleanup"}, Kind: Kind{}, Image: img, Parent: parent}
	_, inputs := steptest.Key(t, &step.KeyContext{Config: &config.Config{}}, s)
	var script *step.Input
	for i := range inputs {
		if inputs[i].Name == "cleanup script" {
			script = &inputs[i]
		}
	}
	if script == nil || script.Type != step.InputScript || script.Digest != step.Digest([]byte(scriptOf(img))) {
		t.Fatalf("inputs %+v: no cleanup script input with the digest of the script", inputs)
	}
	sh := &steptest.Shell{}
	if err := (Kind{}).RunGuest(context.Background(), &step.GuestEnv{Shell: sh, Output: func(string) {}, Redact: func(s string) string { return s }}, s); err != nil {
		t.Fatal(err)
	}
	if len(sh.Runs) != 1 || sh.Runs[0].Cmd != scriptOf(img) || !sh.Runs[0].Opts.Sudo {
		t.Errorf("ran %+v, want the keyed script with sudo", sh.Runs)
	}
	if !strings.Contains(sh.Runs[0].Cmd, step.BuildUserName) {
		t.Errorf("the script does not remove the build user %s", step.BuildUserName)
	}
	if got := (Kind{}).Explain(*script); !strings.Contains(got, "cleanup script changed") {
		t.Errorf("explanation %q", got)
	}
}

// A failed cleanup names its exit status and shows its last output.
func TestRunGuestFails(t *testing.T) {
	sh := &steptest.Shell{Reply: func(context.Context, string) (string, int, error) { return "rm: cannot remove\n", 1, nil }}
	s := &step.Step{Addr: step.Address{Image: "img", Kind: "cleanup"}, Kind: Kind{}, Image: &config.Image{Name: "img"}}
	err := (Kind{}).RunGuest(context.Background(), &step.GuestEnv{Shell: sh, Output: func(string) {}, Redact: func(s string) string { return s }}, s)
	if err == nil || !strings.Contains(err.Error(), "cleanup exited with status 1") || !strings.Contains(err.Error(), "rm: cannot remove") {
		t.Errorf("error %v", err)
	}
}

// Package test is the step kind that proves an image works: its final layer booted as a brand-new instance
// (internal/steps/vm), the built-in checks of internal/steps/smoke and the image's test blocks run in it.
package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
	"gitlab.com/imgform/imgform/internal/steps/smoke"
)

// Kind is the test kind.
type Kind struct{}

var (
	_ step.HostKind  = Kind{}
	_ step.Verifier  = Kind{}
	_ step.Explainer = Kind{}
)

func (Kind) Name() string      { return "test" }
func (Kind) Version() int      { return 1 }
func (Kind) Class() step.Class { return step.Final }

// Instances: one test per image, unless smoke_test is disabled and there is no test block.
func (Kind) Instances(img *config.Image) []step.Instance {
	if !img.HasTestStep() {
		return nil
	}
	return []step.Instance{{}}
}

// reportFile holds the report of a passed test in its object.
const reportFile = "report.json"

// Key: the final layer, the machine type and firmware the instance boots with, the smoke_test settings with
// the full text of every built-in check and the test user-data (steps/smoke), each test block with its
// script's content, and the text imgform wraps around the commands of test blocks. Out: the throwaway
// key, the instance-id and the MAC address, which are new on every run by design.
func (Kind) Key(ctx context.Context, _ *step.KeyContext, s *step.Step, b *step.KeyBuilder) error {
	b.Step(s.Parent)
	img := s.Image
	m := img.Machine
	if err := b.Config("machine", struct {
		Type     string `json:"type"`
		Firmware string `json:"firmware"`
	}{m.Type, m.Firmware}); err != nil {
		return err
	}
	b.Script("smoke_test", smoke.KeyText(img))
	if err := b.Config("smoke_test settings", struct {
		DNSQuery string `json:"dns_query,omitempty"`
	}{img.SmokeTest.DNSQuery}); err != nil {
		return err
	}
	refs := [][]string{img.SmokeTest.VarRefs, m.VarRefs}
	b.Script("command wrapper", step.GuestCommandText())
	for _, t := range img.Tests {
		if err := b.Config("test "+t.Name, struct {
			Inline []string `json:"inline,omitempty"`
			Script string   `json:"script,omitempty"`
			Sudo   bool     `json:"sudo"`
		}{t.Inline, t.Script, t.Sudo}); err != nil {
			return err
		}
		if err := b.File(ctx, "script", t.Script); err != nil {
			return fmt.Errorf("test %q: %w", t.Name, err)
		}
		refs = append(refs, t.VarRefs)
	}
	b.Variables(refs...)
	return nil
}

// Explain words the checks' inputs.
func (Kind) Explain(in step.Input) string {
	switch {
	case in.Name == "smoke_test":
		return "the built-in checks changed (smoke_test block, cleanup or network blocks, or imgform's checks)"
	case in.Name == "machine" || in.Name == "smoke_test settings":
		return "" // the engine's words: "its machine configuration changed"
	case in.Type == step.InputConfig:
		return fmt.Sprintf("the %s block changed", in.Name) // "test NAME": every other config input is a test block
	}
	return ""
}

// Run boots the final layer as a new instance and checks it. A passed test is an object in the store
// holding its report, so the next apply finds it cached; a failed one is not stored (the next apply tests
// again), and its report still reaches the manifest (through env.SetData), which marks the outputs
// unverified. Built is false when another apply passed the same test meanwhile: its report is the one.
func (k Kind) Run(ctx context.Context, env *step.Env, s *step.Step) (step.Result, error) {
	if env.Machines == nil {
		return step.Result{}, errors.New("this imgform has no VM runner, so the test step cannot run (apply -skip-tests leaves it out)")
	}
	var report *step.TestReport
	info := state.Info{Kind: s.Addr.Kind, Image: s.Image.Name, Step: s.Addr.ID()}
	// No Parent: the report names no file of the layer, and a parent would make every pull of the report
	// from a remote cache pull the whole layer chain with it (internal/engine/remote.go), where a runner
	// that only needs the outputs wants the report alone. The layer's digest ties the report to the bytes
	// it tested instead (step.TestedLayerAttr).
	if layer, ok, err := env.Store.Lookup(s.Parent.Key); err == nil && ok {
		info.Attrs = map[string]string{step.TestedLayerAttr: layer.SHA256}
		// A report of another build of this layer is stale: test this one.
		if old, ok, err := env.Store.Lookup(s.Key); err == nil && ok {
			if tested := old.Attrs[step.TestedLayerAttr]; tested != "" && tested != layer.SHA256 {
				if err := env.Store.Discard(s.Key); err != nil {
					return step.Result{}, err
				}
			}
		}
	}
	obj, built, err := env.Store.GetOrBuild(ctx, s.Key, info,
		env.LockOptions(fmt.Sprintf("test of image %s", s.Image.Name)),
		func(ctx context.Context, w *state.Writer) error {
			var err error
			report, err = test(ctx, env, s)
			if report != nil {
				env.SetData(report)
			}
			if err != nil {
				return err
			}
			data, err := json.MarshalIndent(report, "", "  ")
			if err != nil {
				return err
			}
			return w.WriteFile(reportFile, append(data, '\n'), 0o644)
		})
	if err == nil && !built {
		if report, err = k.CachedReport(obj); err != nil {
			return step.Result{}, err
		}
	}
	return step.Result{Built: built, Data: report}, err
}

// test gathers what the test needs from the final layer and runs it.
func test(ctx context.Context, env *step.Env, s *step.Step) (report *step.TestReport, err error) {
	img := s.Image
	layer, ok, err := env.Store.Lookup(s.Parent.Key)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("the final layer of image %q is not in the store", img.Name)
	}
	if err := env.VerifyChain(ctx, layer); err != nil {
		return nil, fmt.Errorf("a cached layer of image %q is damaged (%w); run imgform cache verify -remove and apply again", img.Name, err)
	}
	if err := qemu.CheckChainWithin(layer.Path(step.LayerFile), env.Store.Dir()); err != nil {
		return nil, fmt.Errorf("the final layer of image %q: %w", img.Name, err)
	}
	buildKey, err := os.ReadFile(layer.Path(step.BuildKeyFile))
	if err != nil {
		return nil, fmt.Errorf("the build key of image %q: %w", img.Name, err)
	}
	// Layers written before imgform recorded them lack these; the checks then say what they could not compare.
	hostKeys, _ := os.ReadFile(layer.Path(step.HostKeysFile))
	machineID, _ := os.ReadFile(layer.Path(step.MachineIDFile))
	work, err := env.Store.NewWorkDir("test-")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, work.Remove()) }()
	report, err = env.Machines.Test(ctx, &step.TestJob{
		Image: img, ConfigDir: env.Config.Dir, Disk: step.Disk{Path: layer.Path(step.LayerFile), Format: "qcow2"},
		WorkDir: work.Path(), BuildUser: step.BuildUserName, BuildKey: buildKey,
		BuildHostKeys: hostKeys, BuildMachineID: strings.TrimSpace(string(machineID)),
		Output: env.Output, Message: env.Warn, Redact: env.Config.Redact, Shared: env.Shared,
	})
	if report != nil {
		for i := range report.Checks {
			report.Checks[i].Detail = env.Config.Redact(report.Checks[i].Detail)
		}
	}
	return report, err
}

// CachedReport reads the report a passed test stored in its object.
func (Kind) CachedReport(obj *state.Object) (*step.TestReport, error) {
	data, err := os.ReadFile(obj.Path(reportFile))
	if err != nil {
		return nil, fmt.Errorf("the report of a passed test: %w", err)
	}
	var r step.TestReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("the report of a passed test %s: %w", obj.Key.Short(), err)
	}
	return &r, nil
}

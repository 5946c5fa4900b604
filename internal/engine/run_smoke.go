package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"gitlab.com/imgform/imgform/internal/state"
)

// runTest boots the image's final layer as a new instance and checks it (steps/vm, steps/smoke). A passed
// test is an object in the store holding its report, so the next apply finds it cached; a failed one is
// not stored (the next apply tests again), and its report still reaches the manifest, which marks the
// outputs unverified. built is false when another apply tested the same layer meanwhile.
func (a *applier) runTest(ctx context.Context, sp *StepPlan) (built bool, err error) {
	s := sp.step
	if a.e.Tester == nil {
		return false, errors.New("this imgform has no VM runner, so the test step cannot run (apply -skip-tests leaves it out)")
	}
	obj, built, err := a.e.Store.GetOrBuild(ctx, s.Key,
		state.Info{Kind: string(KindTest), Image: s.Image.Name, Step: s.ID, Parent: s.Parent.Key},
		a.lockOptions(fmt.Sprintf("test of image %s", s.Image.Name)),
		func(ctx context.Context, w *state.Writer) error {
			report, err := a.test(ctx, sp)
			a.setTestReport(s, report)
			if err != nil {
				return err
			}
			data, err := json.MarshalIndent(report, "", "  ")
			if err != nil {
				return err
			}
			return w.WriteFile(TestReportFile, append(data, '\n'), 0o644)
		})
	if err == nil && !built {
		// Another apply passed the same test while this one waited: its report is the one to publish.
		report, rerr := readTestReport(obj)
		if rerr != nil {
			return false, rerr
		}
		a.setTestReport(s, report)
	}
	return built, err
}

// test gathers what the test needs from the final layer and runs it.
func (a *applier) test(ctx context.Context, sp *StepPlan) (report *TestReport, err error) {
	s := sp.step
	img := s.Image
	layer, ok, err := a.e.Store.Lookup(s.Parent.Key)
	if err != nil || !ok {
		return nil, fmt.Errorf("the final layer of image %q is not in the store: %v", img.Name, err)
	}
	if err := a.verifyChain(ctx, layer); err != nil {
		return nil, fmt.Errorf("a cached layer of image %q is damaged (%w); run imgform cache verify -remove and apply again", img.Name, err)
	}
	buildKey, err := os.ReadFile(layer.Path(BuildKeyFile))
	if err != nil {
		return nil, fmt.Errorf("the build key of image %q: %w", img.Name, err)
	}
	// Layers written before imgform recorded them lack these; the checks then say what they could not compare.
	hostKeys, _ := os.ReadFile(layer.Path(HostKeysFile))
	machineID, _ := os.ReadFile(layer.Path(MachineIDFile))
	work, err := a.e.Store.NewWorkDir("test-")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, work.Remove()) }()
	report, err = a.e.Tester.Test(ctx, &TestJob{
		Image: img, ConfigDir: a.cfg.Dir, Disk: Disk{Path: layer.Path(LayerFile), Format: "qcow2"},
		WorkDir: work.Path(), BuildUser: BuildUserName, BuildKey: buildKey, BuildHostKeys: hostKeys,
		BuildMachineID: strings.TrimSpace(string(machineID)),
		Output:         func(line string) { a.e.hooks().StepOutput(sp, a.cfg.Redact(line)) },
		Message:        a.warnOnce,
		Redact:         a.cfg.Redact,
	})
	if report != nil {
		for i := range report.Checks {
			report.Checks[i].Detail = a.cfg.Redact(report.Checks[i].Detail)
		}
	}
	return report, err
}

func (a *applier) setTestReport(s *Step, report *TestReport) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.results[s]
	if r == nil {
		r = &stepResult{}
		a.results[s] = r
	}
	r.test = report
}

func readTestReport(obj *state.Object) (*TestReport, error) {
	data, err := os.ReadFile(obj.Path(TestReportFile))
	if err != nil {
		return nil, fmt.Errorf("the report of a passed test: %w", err)
	}
	var r TestReport
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("the report of a passed test %s: %w", obj.Key.Short(), err)
	}
	return &r, nil
}

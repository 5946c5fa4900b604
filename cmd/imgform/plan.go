package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"gitlab.com/imgform/imgform/internal/engine"
	"gitlab.com/imgform/imgform/internal/kinds"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/steps/export"
)

// newEngine opens the store (IMGFORM_CACHE_DIR or the user's cache folder) and wires the steps.
func newEngine(hooks engine.Hooks) (*engine.Engine, error) {
	dir, err := state.DefaultDir()
	if err != nil {
		return nil, err
	}
	st, err := state.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the cache in %s: %w", dir, err)
	}
	guest := guestRunner(hooks)
	return &engine.Engine{
		Store:       st,
		Hooks:       hooks,
		Kinds:       kinds.All(),
		Machines:    guest,
		DebugKeys:   engine.DebugKeysFromEnv(),
		ToolVersion: version(),
	}, nil
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func planCommand() *cli.Command {
	vars := &varArgs{}
	return &cli.Command{
		Name:      "plan",
		Usage:     "show which build steps would run and why",
		ArgsUsage: "[DIR]",
		Description: "Evaluates the configuration, computes the key of every step and looks each up in the cache. " +
			"Nothing boots and nothing is downloaded but small checksum files. -json prints the plan as versioned " +
			"JSON (docs/plan-json.md).",
		Flags: append(append(varFlags(vars),
			&cli.BoolFlag{Name: "json", Usage: "print the plan as versioned JSON"},
			&cli.BoolFlag{Name: "detailed-exitcode", Usage: "exit 0 when nothing would run, 2 when something would, 1 on error"},
			skipTestsFlag,
		), append(selectFlags(), remoteFlags()...)...),
		Action: func(c *cli.Context) error {
			cfg, err := loadDirConfig(c, vars)
			if err != nil {
				return err
			}
			hooks := &lineHooks{w: c.App.ErrWriter, verbose: true}
			eng, err := newEngine(hooks)
			if err != nil {
				return err
			}
			eng.SkipTests = c.Bool("skip-tests")
			applySelection(c, eng)
			if err := openRemote(c.Context, c, eng); err != nil {
				return err
			}
			p, err := eng.Plan(c.Context, cfg)
			if err != nil {
				return cfg.RedactError(err)
			}
			if c.Bool("json") {
				err = renderPlanJSON(c.App.Writer, p)
			} else {
				err = renderPlan(c.App.Writer, p)
			}
			if err != nil {
				return err
			}
			if c.Bool("detailed-exitcode") && p.HasChanges() {
				return exitError{code: 2}
			}
			return nil
		},
	}
}

// selectFlags choose images and force rebuilds, on plan and apply alike.
func selectFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "only", Usage: "plan and build only these images (names or globs such as 'debian-*', comma-separated or repeated); the images they derive from are planned too"},
		&cli.StringSliceFlag{Name: "except", Usage: "leave these images out (names or globs)"},
		&cli.StringSliceFlag{Name: "replace", Usage: "build this step again although it is cached, and everything after it: an ADDRESS as plan prints it, such as debian-12-base.provision.motd (repeatable)"},
	}
}

// applySelection hands -only, -except and -replace to the engine.
func applySelection(c *cli.Context, eng *engine.Engine) {
	eng.Only, eng.Except, eng.Replace = c.StringSlice("only"), c.StringSlice("except"), c.StringSlice("replace")
}

// skipTestsFlag leaves the test steps out, for emergencies: the outputs are then marked unverified.
var skipTestsFlag = &cli.BoolFlag{Name: "skip-tests",
	Usage: "do not boot and check the outputs (emergencies only): they are marked unverified in SHA256SUMS and the manifest"}

func applyCommand() *cli.Command {
	vars := &varArgs{}
	return &cli.Command{
		Name:      "apply",
		Usage:     "build what the plan shows and write the outputs",
		ArgsUsage: "[DIR]",
		Description: "Runs the steps that are not cached, independent ones in parallel, and writes the outputs " +
			"atomically. Ctrl-C stops running steps cleanly; finished steps stay cached and the next apply resumes.",
		Flags: append(append(varFlags(vars),
			&cli.IntFlag{Name: "parallelism", Value: 2, Usage: "run at most N steps at once"},
			&cli.BoolFlag{Name: "json", Usage: "print progress as JSON event lines"},
			skipTestsFlag,
			&cli.StringFlag{Name: "on-error", Value: "cleanup",
				Usage: "cleanup: stop the VM of a failed step; keep: leave it running, print how to log in, and wait for Ctrl-C"},
		), append(selectFlags(), remoteFlags()...)...),
		Action: func(c *cli.Context) error {
			cfg, err := loadDirConfig(c, vars)
			if err != nil {
				return err
			}
			var hooks engine.Hooks
			if c.Bool("json") {
				hooks = newJSONHooks(c.App.Writer)
			} else {
				hooks = &lineHooks{w: c.App.Writer, terminal: isTerminal(c.App.Writer), verbose: true}
			}
			eng, err := newEngine(hooks)
			if err != nil {
				return err
			}
			eng.Parallelism = c.Int("parallelism")
			eng.SkipTests = c.Bool("skip-tests")
			applySelection(c, eng)
			switch c.String("on-error") {
			case "cleanup":
			case "keep":
				eng.KeepOnError = true
			default:
				return fmt.Errorf("-on-error: %q is neither cleanup nor keep", c.String("on-error"))
			}
			if err := openRemote(c.Context, c, eng); err != nil {
				return err
			}
			start := time.Now()
			res, err := eng.Apply(c.Context, cfg)
			if jh, ok := hooks.(*jsonHooks); ok && res != nil {
				jh.emit(jsonEvent{Type: "apply_finished", Outputs: res.Outputs, ElapsedMs: time.Since(start).Milliseconds()})
			} else if res != nil {
				printApplySummary(c.App.Writer, res, time.Since(start))
			}
			if err != nil {
				return cfg.RedactError(err)
			}
			return nil
		},
	}
}

func newJSONHooks(w io.Writer) *jsonHooks {
	return &jsonHooks{enc: json.NewEncoder(w), now: time.Now}
}

func printApplySummary(w interface{ Write([]byte) (int, error) }, res *engine.Result, elapsed time.Duration) {
	fmt.Fprintf(w, "\nApply finished in %s: %d step(s) ran, %d failed, %d cached.\n",
		elapsed.Round(100*time.Millisecond), res.Ran, res.Failed, res.Plan.Cached+res.Cached)
	for _, o := range res.Outputs {
		state := "unchanged"
		if o.Written {
			state = "written"
		}
		verified := ""
		switch o.Verification {
		case export.VerificationPassed:
			verified = ", tested"
		case export.VerificationDisabled:
		default:
			verified = ", UNVERIFIED: test " + o.Verification
		}
		fmt.Fprintf(w, "  %s (%s, %d bytes, sha256 %s%s)\n", o.Path, state, o.Size, o.SHA256, verified)
	}
}

package main

import (
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"gitlab.com/imgform/imgform/internal/engine"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
	"gitlab.com/imgform/imgform/internal/steps/vm"
)

// shellCommand is imgform shell: a throwaway VM at the state after a cached step, for looking around.
func shellCommand() *cli.Command {
	vars := &varArgs{}
	return &cli.Command{
		Name:      "shell",
		Usage:     "open a shell in a throwaway VM at the state after a cached step",
		ArgsUsage: "[DIR]",
		Description: "Starts a VM on the cached layer of a guest step (the last one in the cache by default) and logs " +
			"in as the build user on a terminal. The VM resumes the state saved with the layer, so running services " +
			"and /run are as the build left them, or boots the layer when it has none. It writes to a throwaway " +
			"overlay: nothing reaches the cache or the outputs. The VM stops when the shell ends.",
		Flags: append(varFlags(vars),
			&cli.StringFlag{Name: "image", Usage: "the image (needed when the configuration has several)"},
			&cli.StringFlag{Name: "step", Usage: "the step, as plan shows it: boot, provision/NAME (or provision.NAME), cleanup"},
			&cli.StringFlag{Name: "c", Usage: "run this command instead of an interactive shell and exit with its status"},
		),
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
			gl, err := eng.GuestLayer(c.Context, cfg, c.String("image"), c.String("step"))
			if err != nil {
				return cfg.RedactError(err)
			}
			defer func() { _ = gl.Release() }()
			work, err := eng.Store.NewWorkDir("shell-")
			if err != nil {
				return err
			}
			defer func() { _ = work.Remove() }()
			fmt.Fprintf(c.App.ErrWriter, "Starting a throwaway VM of image %q at %s (nothing is saved)...\n", gl.Image.Name, gl.Label)
			runner, ok := eng.Machines.(*vm.Runner)
			if !ok {
				return fmt.Errorf("this imgform has no VM runner")
			}
			var in io.Reader = os.Stdin
			if c.App.Reader != nil {
				in = c.App.Reader
			}
			code, err := runner.Shell(c.Context, &vm.ShellJob{
				Image: gl.Image, Layer: gl.Layer, LayerLabel: gl.Label, Seed: gl.Seed, Root: eng.Store.Dir(),
				WorkDir:  work.Path(),
				Message:  func(text string) { hooks.Message(engine.LevelWarn, text) },
				Info:     func(text string) { hooks.Message(engine.LevelInfo, text) },
				Terminal: ssh.Terminal{In: in, Out: c.App.Writer, Err: c.App.ErrWriter, Type: os.Getenv("TERM")},
				Command:  c.String("c"),
			})
			if err != nil {
				return cfg.RedactError(err)
			}
			if code != 0 {
				return exitError{code: code}
			}
			return nil
		},
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/debuglog"
)

func contextBackground() context.Context { return context.Background() }

// varArgs collects -var and -var-file into one ordered list: a later argument wins over an earlier one,
// whichever of the two flags it is, so both flags append to the same slice.
type varArgs struct{ list []config.VarArg }

type varFlagValue struct {
	args *varArgs
	file bool
}

func (v *varFlagValue) Set(s string) error {
	if v.file {
		v.args.list = append(v.args.list, config.VarArg{File: s})
		return nil
	}
	a, err := config.ParseVarFlag(s)
	if err != nil {
		return err
	}
	v.args.list = append(v.args.list, a)
	return nil
}

func (v *varFlagValue) String() string { return "" }

// varFlags returns the -var and -var-file flags bound to one ordered list.
func varFlags(args *varArgs) []cli.Flag {
	return []cli.Flag{
		&cli.GenericFlag{Name: "var", Usage: "set a variable: -var NAME=VALUE (repeatable)", Value: &varFlagValue{args: args}},
		&cli.GenericFlag{Name: "var-file", Usage: "read variables from an HCL file (repeatable)", Value: &varFlagValue{args: args, file: true}},
	}
}

// configDir is the folder argument, "." by default.
func configDir(c *cli.Context) (string, error) {
	switch c.NArg() {
	case 0:
		return ".", nil
	case 1:
		return c.Args().First(), nil
	}
	return "", fmt.Errorf("%s takes one configuration folder, got %d arguments (flags go before the folder)", c.Command.Name, c.NArg())
}

// loadConfig loads a configuration and prints its diagnostics; errors become exit status 1.
func loadConfig(c *cli.Context, dir string, vars *varArgs) (*config.Config, error) {
	loader := config.NewLoader()
	cfg, diags := loader.Load(dir, config.LoadOptions{Vars: vars.list})
	if len(diags) > 0 {
		if err := printDiagnostics(c.App.ErrWriter, loader, diags); err != nil {
			return nil, err
		}
	}
	if diags.HasErrors() {
		return nil, exitError{code: 1}
	}
	debuglog.SetRedact(cfg.Redact)
	return cfg, nil
}

// loadDirConfig loads the configuration of the command's folder argument (plan, apply).
func loadDirConfig(c *cli.Context, vars *varArgs) (*config.Config, error) {
	dir, err := configDir(c)
	if err != nil {
		return nil, err
	}
	return loadConfig(c, dir, vars)
}

func printDiagnostics(w io.Writer, loader *config.Loader, diags hcl.Diagnostics) error {
	width, color := uint(100), false
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if wd, _, err := term.GetSize(int(f.Fd())); err == nil && wd > 20 {
			width = uint(wd)
		}
		color = os.Getenv("NO_COLOR") == ""
	}
	return loader.WriteDiagnostics(w, diags, width, color)
}

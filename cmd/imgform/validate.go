package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
)

func validateCommand() *cli.Command {
	vars := &varArgs{}
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a configuration without building anything",
		ArgsUsage: "[DIR|FILE]...",
		Description: "Loads every *.imgform.hcl file of DIR (default: the current folder), evaluates variables, locals " +
			"and functions, and checks every image. Errors are printed as file:line:col with a snippet; the exit " +
			"status is 1 when there is any error. A FILE stands for its folder, so pre-commit can pass the changed " +
			"files; each folder is checked once.",
		Flags: append(varFlags(vars),
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing when the configuration is valid"},
		),
		Action: func(c *cli.Context) error {
			failed := false
			for _, dir := range validateDirs(c.Args().Slice()) {
				cfg, err := loadConfig(c, dir, vars)
				var ee exitError
				if errors.As(err, &ee) {
					failed = true
					continue
				}
				if err != nil {
					return err
				}
				if !c.Bool("quiet") {
					fmt.Fprintf(c.App.Writer, "The configuration in %s is valid: %d image(s), %d file(s).\n", dir, len(cfg.Images), len(cfg.Files))
				}
			}
			if failed {
				return exitError{code: 1}
			}
			return nil
		},
	}
}

// validateDirs maps the arguments to configuration folders: a file stands for the folder it is in.
func validateDirs(args []string) []string {
	if len(args) == 0 {
		return []string{"."}
	}
	var dirs []string
	seen := map[string]bool{}
	for _, a := range args {
		if st, err := os.Stat(a); err == nil && !st.IsDir() {
			a = filepath.Dir(a)
		}
		if !seen[filepath.Clean(a)] {
			seen[filepath.Clean(a)] = true
			dirs = append(dirs, a)
		}
	}
	return dirs
}

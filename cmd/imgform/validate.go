package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"gitlab.com/imgform/imgform/internal/config"
)

func validateCommand() *cli.Command {
	vars := &varArgs{}
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a configuration without building anything",
		ArgsUsage: "[DIR|FILE]...",
		Description: "Loads every *.imgform.hcl file of DIR (default: the current folder), evaluates variables, locals " +
			"and functions, and checks every image. Errors are printed as file:line:col with a snippet; the exit " +
			"status is 1 when there is any error. A FILE stands for the configuration folder that holds it: its own " +
			"folder or the nearest one above with *.imgform.hcl files (a script in DIR/scripts belongs to DIR), so " +
			"pre-commit can pass the changed files; each folder is checked once, and a file that belongs to no " +
			"configuration is ignored.",
		Flags: append(varFlags(vars),
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing when the configuration is valid"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON in the layout of terraform validate -json (docs/plan-json.md)"},
		),
		Action: func(c *cli.Context) error {
			failed := false
			dirs, err := validateDirs(c.Args().Slice())
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return validateJSON(c, dirs, vars)
			}
			if len(dirs) == 0 && !c.Bool("quiet") {
				fmt.Fprintln(c.App.Writer, "None of the given files belongs to a configuration: nothing to validate.")
			}
			for _, dir := range dirs {
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

// validateDirs maps the arguments to configuration folders. A folder is taken as given (loading it says
// when it holds no configuration); a file stands for the nearest folder at or above its own that holds
// *.imgform.hcl files, and is ignored when there is none: pre-commit passes every changed file that its
// pattern matches, such as a CI file at the top of a repository, and only configurations are checked.
func validateDirs(args []string) ([]string, error) {
	if len(args) == 0 {
		return []string{"."}, nil
	}
	var dirs []string
	seen := map[string]bool{}
	for _, a := range args {
		if st, err := os.Stat(a); err == nil && !st.IsDir() {
			dir, ok, err := configFolderOf(a)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			a = dir
		}
		if !seen[filepath.Clean(a)] {
			seen[filepath.Clean(a)] = true
			dirs = append(dirs, a)
		}
	}
	return dirs, nil
}

// configFolderOf walks up from a file's folder to the first one holding *.imgform.hcl files. A relative
// path stops at the current folder, where pre-commit runs (the top of the repository).
func configFolderOf(file string) (string, bool, error) {
	dir := filepath.Dir(file)
	for {
		m, err := filepath.Glob(filepath.Join(dir, "*.imgform.hcl"))
		if err != nil {
			return "", false, err
		}
		if len(m) > 0 {
			return dir, true, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir || dir == "." {
			return "", false, nil
		}
		dir = parent
	}
}

// validateResult is the output of validate -json: terraform validate -json's layout, for every folder
// checked together (each diagnostic's range names its file).
type validateResult struct {
	FormatVersion string                  `json:"format_version"`
	Valid         bool                    `json:"valid"`
	ErrorCount    int                     `json:"error_count"`
	WarningCount  int                     `json:"warning_count"`
	Diagnostics   []config.JSONDiagnostic `json:"diagnostics"`
}

// validateJSON checks the folders and prints one JSON object; the exit status is 1 when it is not valid.
func validateJSON(c *cli.Context, dirs []string, vars *varArgs) error {
	res := validateResult{FormatVersion: config.ValidateFormatVersion, Diagnostics: []config.JSONDiagnostic{}}
	for _, dir := range dirs {
		loader := config.NewLoader()
		_, diags := loader.Load(dir, config.LoadOptions{Vars: vars.list})
		for _, d := range loader.JSONDiagnostics(diags) {
			if d.Severity == "error" {
				res.ErrorCount++
			} else {
				res.WarningCount++
			}
			res.Diagnostics = append(res.Diagnostics, d)
		}
	}
	res.Valid = res.ErrorCount == 0
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return err
	}
	if !res.Valid {
		return exitError{code: 1}
	}
	return nil
}

package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/urfave/cli/v2"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/fsutil"
)

type fmtOptions struct {
	check, diff, recursive, write, list bool
}

func fmtCommand() *cli.Command {
	return &cli.Command{
		Name:      "fmt",
		Usage:     "rewrite configuration files in the canonical layout",
		ArgsUsage: "[PATH|-]...",
		Description: "Formats *.imgform.hcl and *.imgvars.hcl files in the given folders (default: the current one) or the " +
			"named files, like packer fmt. With -check nothing is written and the exit status is 3 when a file would " +
			"change (the files are listed); - reads standard input and writes the result to standard output.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "check", Usage: "write nothing; exit 3 when a file is not formatted"},
			&cli.BoolFlag{Name: "diff", Usage: "print the differences"},
			&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"}, Usage: "also format files in subfolders"},
			&cli.BoolFlag{Name: "write", Value: true, Usage: "write the result back to the file (-write=false to only list or diff)"},
			&cli.BoolFlag{Name: "list", Value: true, Usage: "list the files whose formatting differs"},
		},
		Action: func(c *cli.Context) error {
			opts := fmtOptions{
				check: c.Bool("check"), diff: c.Bool("diff"), recursive: c.Bool("recursive"),
				write: c.Bool("write") && !c.Bool("check"), list: c.Bool("list"),
			}
			paths := c.Args().Slice()
			if len(paths) == 0 {
				paths = []string{"."}
			}
			return runFmt(c.App.Writer, c.App.ErrWriter, c.App.Reader, paths, opts)
		},
	}
}

// runFmt formats every path; exit status 2 for syntax errors, 3 when -check finds unformatted files.
func runFmt(stdout, stderr io.Writer, stdin io.Reader, paths []string, opts fmtOptions) error {
	var changed []string
	var diags hcl.Diagnostics
	for _, p := range paths {
		if p == "-" {
			src, err := io.ReadAll(stdin)
			if err != nil {
				return fmt.Errorf("reading standard input: %w", err)
			}
			out, d := config.Format(src, "<stdin>")
			if d.HasErrors() {
				diags = append(diags, d...)
				continue
			}
			if opts.check && !bytes.Equal(src, out) {
				changed = append(changed, "<stdin>")
				continue
			}
			if _, err := stdout.Write(out); err != nil {
				return err
			}
			continue
		}
		files, err := fmtTargets(p, opts.recursive)
		if err != nil {
			return err
		}
		for _, f := range files {
			did, d, err := fmtFile(stdout, f, opts)
			if err != nil {
				return err
			}
			diags = append(diags, d...)
			if did {
				changed = append(changed, f)
			}
		}
	}
	if len(diags) > 0 {
		w := hcl.NewDiagnosticTextWriter(stderr, nil, 100, false)
		if err := w.WriteDiagnostics(diags); err != nil {
			return err
		}
		return exitError{code: 2}
	}
	if opts.check && len(changed) > 0 {
		fmt.Fprintf(stderr, "%d file(s) are not formatted; run imgform fmt to fix them.\n", len(changed))
		return exitError{code: 3}
	}
	return nil
}

// fmtTargets lists the files to format under p: a named file is always taken, a folder gives its
// configuration and variable files.
func fmtTargets(p string, recursive bool) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("fmt: %w", err)
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != p && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		if config.IsFormattable(d.Name()) {
			files = append(files, path)
		}
		return nil
	})
	return files, err
}

func fmtFile(stdout io.Writer, path string, opts fmtOptions) (bool, hcl.Diagnostics, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return false, nil, fmt.Errorf("fmt: %w", err)
	}
	out, diags := config.Format(src, path)
	if diags.HasErrors() {
		return false, diags, nil
	}
	if bytes.Equal(src, out) {
		return false, nil, nil
	}
	if opts.list {
		fmt.Fprintln(stdout, path)
	}
	if opts.diff {
		d, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(string(src)), B: difflib.SplitLines(string(out)),
			FromFile: "old/" + filepath.ToSlash(path), ToFile: "new/" + filepath.ToSlash(path), Context: 3,
		})
		if err != nil {
			return false, nil, err
		}
		fmt.Fprint(stdout, d)
	}
	if opts.write {
		st, err := os.Stat(path)
		if err != nil {
			return false, nil, err
		}
		// Atomic, so an interrupted fmt never leaves a half-written configuration file.
		if err := fsutil.WriteFileAtomic(path, out, st.Mode().Perm()); err != nil {
			return false, nil, fmt.Errorf("fmt: %w", err)
		}
	}
	return true, nil, nil
}

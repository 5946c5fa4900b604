package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func validateCommand() *cli.Command {
	vars := &varArgs{}
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a configuration without building anything",
		ArgsUsage: "[DIR]",
		Description: "Loads every *.imgform.hcl file of DIR (default: the current folder), evaluates variables, locals " +
			"and functions, and checks every image. Errors are printed as file:line:col with a snippet; the exit " +
			"status is 1 when there is any error.",
		Flags: append(varFlags(vars),
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print nothing when the configuration is valid"},
		),
		Action: func(c *cli.Context) error {
			dir, err := configDir(c)
			if err != nil {
				return err
			}
			cfg, _, err := loadConfig(c, dir, vars)
			if err != nil {
				return err
			}
			if !c.Bool("quiet") {
				fmt.Fprintf(c.App.Writer, "The configuration in %s is valid: %d image(s), %d file(s).\n", dir, len(cfg.Images), len(cfg.Files))
			}
			return nil
		},
	}
}

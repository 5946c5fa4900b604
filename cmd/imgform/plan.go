package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// planCommand and applyCommand parse their flags and load the configuration; the engine that computes step
// keys and runs steps is wired in by the engine work (issue 3).
func planCommand() *cli.Command {
	vars := &varArgs{}
	return &cli.Command{
		Name:      "plan",
		Usage:     "show which build steps would run and why",
		ArgsUsage: "[DIR]",
		Flags: append(varFlags(vars),
			&cli.BoolFlag{Name: "json", Usage: "print the plan as versioned JSON"},
			&cli.BoolFlag{Name: "detailed-exitcode", Usage: "exit 0 when nothing would run, 2 when something would, 1 on error"},
		),
		Action: func(c *cli.Context) error {
			dir, err := configDir(c)
			if err != nil {
				return err
			}
			if _, _, err := loadConfig(c, dir, vars); err != nil {
				return err
			}
			return fmt.Errorf("plan: the build engine is not part of this version yet")
		},
	}
}

func applyCommand() *cli.Command {
	vars := &varArgs{}
	return &cli.Command{
		Name:      "apply",
		Usage:     "build what the plan shows and write the outputs",
		ArgsUsage: "[DIR]",
		Flags: append(varFlags(vars),
			&cli.IntFlag{Name: "parallelism", Value: 2, Usage: "run at most N steps at once"},
			&cli.BoolFlag{Name: "json", Usage: "print progress as JSON event lines"},
		),
		Action: func(c *cli.Context) error {
			dir, err := configDir(c)
			if err != nil {
				return err
			}
			if _, _, err := loadConfig(c, dir, vars); err != nil {
				return err
			}
			return fmt.Errorf("apply: the build engine is not part of this version yet")
		},
	}
}

func cacheCommand() *cli.Command {
	return &cli.Command{
		Name:  "cache",
		Usage: "list, verify and clean the step cache",
		Subcommands: []*cli.Command{
			{Name: "ls", Usage: "list cached objects", Action: notYet("cache ls")},
			{Name: "gc", Usage: "remove old objects", Action: notYet("cache gc")},
			{Name: "verify", Usage: "check every object against its checksum", Action: notYet("cache verify")},
		},
	}
}

func notYet(what string) cli.ActionFunc {
	return func(*cli.Context) error {
		return fmt.Errorf("%s: the cache commands are not part of this version yet", what)
	}
}

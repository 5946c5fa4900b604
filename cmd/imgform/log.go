package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"gitlab.com/imgform/imgform/internal/debuglog"
)

// The debug log (internal/debuglog): IMGFORM_LOG=debug (or info, warn, error) writes it to standard error,
// -log-file PATH (or IMGFORM_LOG_PATH) to a file, at debug level unless IMGFORM_LOG says otherwise; like
// Packer's PACKER_LOG and Terraform's TF_LOG. Sensitive values are redacted once the configuration is
// loaded (loadConfig), before anything is logged.

// logEnv names the variable with the debug log's level.
const logEnv = "IMGFORM_LOG"

// logFileFlag is accepted before the command (imgform -log-file x apply) and after it (apply -log-file x).
func logFileFlag() cli.Flag {
	return &cli.StringFlag{Name: "log-file", EnvVars: []string{"IMGFORM_LOG_PATH"},
		Usage: "append the debug log (QEMU command lines, QMP traffic, SSH attempts, the accelerator probe; secrets redacted) to this file; IMGFORM_LOG sets the level"}
}

// setupLog starts the debug log for a command; the returned function closes its file.
func setupLog(c *cli.Context) (func() error, error) {
	level, path := os.Getenv(logEnv), ""
	for _, ctx := range c.Lineage() { // the command's own flag first, then the one before the command
		if ctx.IsSet("log-file") {
			path = ctx.String("log-file")
			break
		}
	}
	if level == "" && path == "" {
		return func() error { return nil }, debuglog.Setup("off", nil)
	}
	if level == "" {
		level = debuglog.LevelDebug
	}
	var w io.Writer = c.App.ErrWriter
	closeFn := func() error { return nil }
	if path != "" {
		// 0600: the log names files and hosts of the build, which other users need not read.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("-log-file: %w", err)
		}
		w, closeFn = f, f.Close
	}
	if err := debuglog.Setup(level, w); err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", logEnv, err), closeFn())
	}
	debuglog.Logf(debuglog.LevelInfo, "imgform", "%s %s", version(), c.Command.Name)
	return func() error { return errors.Join(debuglog.Setup("off", nil), closeFn()) }, nil
}

// withLog gives a command the -log-file flag and the debug log for the time it runs.
func withLog(cmd *cli.Command) *cli.Command {
	cmd.Flags = append(cmd.Flags, logFileFlag())
	var closeLog func() error
	cmd.Before = func(c *cli.Context) (err error) {
		closeLog, err = setupLog(c)
		return err
	}
	cmd.After = func(*cli.Context) error {
		if closeLog == nil {
			return nil
		}
		return closeLog()
	}
	return cmd
}

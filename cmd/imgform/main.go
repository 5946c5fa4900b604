// Command imgform builds golden VM base images from a declarative HCL configuration.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

// exitError carries an exit code through urfave/cli without printing anything more: commands print their own
// diagnostics before returning it.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run is main without the process: tests call it with their own arguments and streams.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := newApp(stdin)
	app.Writer, app.ErrWriter = stdout, stderr
	ctx, stop := signal.NotifyContext(contextBackground(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := app.RunContext(ctx, args)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(app.ErrWriter, "Error: %s\n", err)
		return 1
	}
}

func newApp(stdin io.Reader) *cli.App {
	return &cli.App{
		Name:  "imgform",
		Usage: "build golden VM base images from HCL, with plan and apply and cached build steps",
		Description: "imgform reads the *.imgform.hcl files of a folder. `imgform plan` shows which build steps would run " +
			"and why, `imgform apply` runs them and writes the images. Steps are cached by the content of everything " +
			"that goes into them, so a change re-runs only what depends on it.",
		Version:              version(),
		EnableBashCompletion: true,
		HideVersion:          false,
		Reader:               stdin,
		Flags:                []cli.Flag{logFileFlag()},
		Commands: []*cli.Command{
			validateCommand(),
			fmtCommand(),
			withLog(planCommand()),
			withLog(applyCommand()),
			withLog(shellCommand()),
			graphCommand(),
			cacheCommand(),
			versionCommand(),
			completionCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {}, // run() decides the exit code; never os.Exit inside cli
	}
}

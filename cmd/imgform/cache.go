package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
)

func openStore() (*state.Store, error) {
	dir, err := state.DefaultDir()
	if err != nil {
		return nil, err
	}
	return state.Open(dir)
}

// humanSize renders a byte count for people, "223.6 MiB": config.Size's exact form would print most
// object sizes in bytes ("233621332B").
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %s", v, []string{"B", "KiB", "MiB", "GiB", "TiB"}[i])
}

func cacheCommand() *cli.Command {
	lsVars := &varArgs{}
	return &cli.Command{
		Name:  "cache",
		Usage: "list, clean and verify the step cache (IMGFORM_CACHE_DIR)",
		Subcommands: []*cli.Command{
			{
				Name:      "ls",
				Usage:     "list cached objects with size, age and the step that made them",
				ArgsUsage: "[-remote [DIR]]",
				Description: "Lists the local cache. With -remote, lists what the remote cache holds; with a " +
					"configuration folder as well, only the results that configuration uses.",
				Flags: append(append([]cli.Flag{&cli.BoolFlag{Name: "remote", Usage: "list what the remote cache (-remote-cache) holds instead"}},
					varFlags(lsVars)...), remoteFlags()...),
				Action: func(c *cli.Context) error {
					if c.Bool("remote") {
						return listRemote(c, lsVars)
					}
					if c.NArg() > 0 {
						return fmt.Errorf("cache ls lists the whole local cache and takes no folder; a folder goes with -remote")
					}
					st, err := openStore()
					if err != nil {
						return err
					}
					objs, err := st.List()
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "KEY\tKIND\tSIZE\tAGE\tLAST USED\tIMAGE\tSTEP\tPROBLEM")
					var total int64
					for _, o := range objs {
						total += o.Size
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Key.Short(), o.Kind, humanSize(o.Size),
							o.Age.Round(time.Second), o.LastUsed.Local().Format(time.DateTime), o.Image, o.Step, o.Problem)
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					_, err = fmt.Fprintf(c.App.Writer, "%d object(s), %s in %s\n", len(objs), humanSize(total), st.Dir())
					return err
				},
			},
			{
				Name:  "gc",
				Usage: "remove objects not used for a while or beyond a total size, never one a running apply holds",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "older-than", Usage: "remove objects not used for this long, e.g. 720h"},
					&cli.StringFlag{Name: "max-size", Usage: "then remove the least recently used until the cache is at most this size, e.g. 20GiB"},
					&cli.BoolFlag{Name: "dry-run", Usage: "only say what would be removed"},
				},
				Action: func(c *cli.Context) error {
					st, err := openStore()
					if err != nil {
						return err
					}
					opts := state.GCOptions{OlderThan: c.Duration("older-than"), DryRun: c.Bool("dry-run"),
						OnLockEvent: func(e state.LockEvent) { fmt.Fprintln(c.App.ErrWriter, e) }}
					if s := c.String("max-size"); s != "" {
						size, err := config.ParseSize(s, config.MiB)
						if err != nil {
							return fmt.Errorf("-max-size: %w", err)
						}
						opts.MaxSize = int64(size)
					}
					if opts.OlderThan == 0 && opts.MaxSize == 0 {
						return fmt.Errorf("gc needs -older-than or -max-size (or both)")
					}
					rep, err := st.GC(c.Context, opts)
					if err != nil {
						return err
					}
					verb := "removed"
					if opts.DryRun {
						verb = "would remove"
					}
					for _, r := range rep.Removed {
						fmt.Fprintf(c.App.Writer, "%s %s %s (%s)\n", verb, r.Info.Key.Short(), humanSize(r.Info.Size), r.Reason)
					}
					fmt.Fprintf(c.App.Writer, "%s %d object(s), %s; %d kept (%s); %d held by a running apply; %d interrupted write(s) cleaned\n",
						verb, len(rep.Removed), humanSize(rep.Freed), rep.Kept, humanSize(rep.KeptSize), len(rep.Held), len(rep.RemovedTemp))
					return nil
				},
			},
			{
				Name:  "verify",
				Usage: "check every object against its recorded sha256",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "remove", Usage: "remove the bad objects (and the layers built on them)"}},
				Action: func(c *cli.Context) error {
					st, err := openStore()
					if err != nil {
						return err
					}
					rep, err := st.VerifyAll(c.Context, state.VerifyOptions{Remove: c.Bool("remove"),
						OnLockEvent: func(e state.LockEvent) { fmt.Fprintln(c.App.ErrWriter, e) }})
					if err != nil {
						return err
					}
					for _, b := range rep.Bad {
						fmt.Fprintf(c.App.Writer, "bad %s (%s of image %s): %v\n", b.Info.Key.Short(), b.Info.Step, b.Info.Image, b.Err)
					}
					for _, r := range rep.Removed {
						fmt.Fprintf(c.App.Writer, "removed %s (%s)\n", r.Info.Key.Short(), r.Reason)
					}
					fmt.Fprintf(c.App.Writer, "checked %d object(s): %d bad, %d removed\n", rep.Checked, len(rep.Bad), len(rep.Removed))
					// Records of the last applies: a damaged one is ignored (with a warning) by the next plan of its
					// configuration, and replaced by its next apply; -remove drops it now.
					problems, err := st.VerifyRecords()
					if err != nil {
						return err
					}
					badRecords := 0
					for _, p := range problems {
						if c.Bool("remove") && errors.Is(p.Err, state.ErrRecordDamaged) {
							if err := os.Remove(p.Path); err != nil {
								return err
							}
							fmt.Fprintf(c.App.Writer, "removed damaged record %s: %v\n", p.Path, p.Err)
							continue
						}
						badRecords++
						fmt.Fprintf(c.App.Writer, "bad record %s: %v\n", p.Path, p.Err)
					}
					if len(rep.Bad) > len(rep.Removed) || badRecords > 0 {
						return exitError{code: 1}
					}
					return nil
				},
			},
		},
	}
}

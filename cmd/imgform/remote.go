package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"gitlab.com/imgform/imgform/internal/engine"
	"gitlab.com/imgform/imgform/internal/remote"
)

// remoteFlags select the shared step cache on an OCI registry (docs/remote-cache.md).
func remoteFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "remote-cache", EnvVars: []string{"IMGFORM_REMOTE_CACHE"},
			Usage: "share step results through an OCI registry: oci://HOST[:PORT]/REPOSITORY"},
		&cli.StringFlag{Name: "remote-cache-mode", EnvVars: []string{"IMGFORM_REMOTE_CACHE_MODE"}, Value: "readwrite",
			Usage: "readwrite, or read to use the remote cache without pushing to it (merge requests)"},
		&cli.BoolFlag{Name: "remote-cache-insecure", EnvVars: []string{"IMGFORM_REMOTE_CACHE_INSECURE"},
			Usage: "allow plain HTTP to a registry that is not on loopback (the remote cache and publish references)"},
		&cli.StringFlag{Name: "remote-cache-ca", EnvVars: []string{"IMGFORM_REMOTE_CACHE_CA"},
			Usage: "PEM file of CA certificates to trust for registries (the remote cache and publish references), besides the system's"},
	}
}

// listRemote prints what the remote cache holds: one line per step result, newest first. With a
// configuration folder, only the results whose keys that configuration's plan has: in a repository that
// several configurations (or branches) share, what this one would pull, and what a cleanup must keep.
func listRemote(c *cli.Context, vars *varArgs) error {
	if c.String("remote-cache") == "" {
		return fmt.Errorf("cache ls -remote: give the remote cache with -remote-cache oci://HOST/REPOSITORY or IMGFORM_REMOTE_CACHE")
	}
	var wanted map[string]bool
	if c.NArg() > 0 {
		var err error
		if wanted, err = planKeys(c, vars); err != nil {
			return err
		}
	}
	eng := &engine.Engine{}
	if err := openRemote(c.Context, c, eng); err != nil {
		return err
	}
	entries, err := eng.Remote.List(c.Context)
	if err != nil {
		return err
	}
	all := len(entries)
	if wanted != nil {
		entries = slices.DeleteFunc(entries, func(e remote.Entry) bool { return !wanted[e.Key.String()] })
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Meta.Created.After(entries[j].Meta.Created) })
	tw := tabwriter.NewWriter(c.App.Writer, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tKIND\tSIZE\tDOWNLOAD\tCREATED\tIMAGE\tSTEP")
	var total int64
	for _, e := range entries {
		total += e.Size
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Key.Short(), e.Meta.Kind, humanSize(e.Meta.Size), humanSize(e.Size),
			e.Meta.Created.Local().Format(time.DateTime), e.Meta.Image, e.Meta.Step)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if wanted != nil {
		_, err = fmt.Fprintf(c.App.Writer, "%d of the %d result(s) in %s belong to the configuration in %s (%d step(s)), %s to download in all\n",
			len(entries), all, eng.Remote.Ref(), c.Args().First(), len(wanted), humanSize(total))
		return err
	}
	_, err = fmt.Fprintf(c.App.Writer, "%d result(s), %s to download in all, in %s\n", len(entries), humanSize(total), eng.Remote.Ref())
	return err
}

// planKeys plans the configuration in the folder the arguments name against the local cache only (the
// keys do not depend on what any cache holds) and returns every step's key.
func planKeys(c *cli.Context, vars *varArgs) (map[string]bool, error) {
	cfg, err := loadDirConfig(c, vars)
	if err != nil {
		return nil, err
	}
	eng, err := newEngine(&lineHooks{w: c.App.ErrWriter})
	if err != nil {
		return nil, err
	}
	p, err := eng.Plan(c.Context, cfg)
	if err != nil {
		return nil, cfg.RedactError(err)
	}
	keys := map[string]bool{}
	for _, ip := range p.Images {
		for _, sp := range ip.Steps {
			keys[sp.Key] = true
		}
	}
	return keys, nil
}

// openRemote connects eng to the remote cache the flags name, if any. A registry that cannot be reached
// is an error: the user asked for it, and a silent fallback would turn every cached step into a build.
func openRemote(ctx context.Context, c *cli.Context, eng *engine.Engine) error {
	// Outputs with publish references use the same registry settings (credentials come from the
	// environment and Docker's config.json).
	eng.PublishOptions = remote.Options{Insecure: c.Bool("remote-cache-insecure"), CAFile: c.String("remote-cache-ca"),
		Version: version(), Getenv: os.Getenv}
	addr := c.String("remote-cache")
	if addr == "" {
		return nil
	}
	ref, err := remote.Parse(addr)
	if err != nil {
		return fmt.Errorf("-remote-cache: %w", err)
	}
	mode, err := remote.ParseMode(c.String("remote-cache-mode"))
	if err != nil {
		return fmt.Errorf("-remote-cache-mode: %w", err)
	}
	rc, err := remote.Open(ctx, ref, remote.Options{Mode: mode, Insecure: c.Bool("remote-cache-insecure"),
		CAFile: c.String("remote-cache-ca"), Version: version(), Getenv: os.Getenv})
	if err != nil {
		return fmt.Errorf("remote cache %s: %w", ref, err)
	}
	eng.Remote = rc
	return nil
}

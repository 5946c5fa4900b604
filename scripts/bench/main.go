// Command bench measures imgform on the examples and prints the figures of docs/benchmarks.md as
// Markdown (`make bench`):
//
//  1. a full `imgform apply` of examples/debian-12-base from an empty cache: wall time, how long a
//     guest ran (QEMU alive, seen from /proc) against imgform's own work, and the time of each step;
//  2. a no-op apply and a plan of the built configuration, as ratios to the full build;
//  3. an incremental apply after an edit of the last provisioner: wall time, ratio, steps that ran;
//  4. imgform's zstd against the zstd tool (same level, same raw image) and qemu-img convert -c;
//  5. the cache footprint after the full and the incremental build;
//  6. 1, 2, 3 and 5 for examples/debian-12-variants, with whether its two derived images were built
//     in parallel.
//
// Every ratio is taken within one run of the bench: absolute times on the shared 2-core test machines
// vary by about 40 % between runs, ratios much less. The examples are copied into a temporary folder and
// built there with a fresh IMGFORM_CACHE_DIR; the repository is never written to.
//
// Usage: go run ./scripts/bench -imgform bin/imgform -source IMAGE [-out FILE] [-keep] [-only base,variants,export]
//
// Progress goes to stderr, the report to stdout (and -out).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := bench(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func bench() error {
	var (
		bin       = flag.String("imgform", "bin/imgform", "the imgform binary to measure (make build writes bin/imgform)")
		source    = flag.String("source", "", "the source image (scripts/build-test-image.sh prints its path); its sums file is SOURCE.SHA256SUMS")
		out       = flag.String("out", "", "also write the report to this file")
		work      = flag.String("work", "", "work folder (default: a new folder in $TMPDIR); it needs about 6 GB")
		keep      = flag.Bool("keep", false, "keep the work folder: caches, configurations and the raw output of each imgform run")
		only      = flag.String("only", "base,variants,export", "the parts to run: base (figures 1-3, 5), variants (6), export (4)")
		levelsArg = flag.String("levels", "3,19", "zstd levels of the export comparison")
		layer     = flag.String("layer", "", "compare the export on this qcow2 layer instead of the base build's final layer (e.g. to run -only export alone)")
		seedCache = flag.String("seed-cache", "", "for trying the driver only: start each cache as a copy of this one, so the \"full\" builds run little")
	)
	flag.Parse()
	parts := strings.Split(*only, ",")
	if *source == "" && (slices.Contains(parts, "base") || slices.Contains(parts, "variants")) {
		return errors.New("-source is required: make bench passes the image scripts/build-test-image.sh prints")
	}
	var levels []int
	for _, s := range strings.Split(*levelsArg, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-levels: %w", err)
		}
		levels = append(levels, n)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	cfg := &benchConfig{repo: repo, progress: os.Stderr}
	if cfg.bin, err = filepath.Abs(*bin); err != nil {
		return err
	}
	if *source != "" {
		if cfg.source, err = filepath.Abs(*source); err != nil {
			return err
		}
		cfg.vars = []string{"source_url=" + cfg.source, "source_checksum=file:" + cfg.source + ".SHA256SUMS"}
	}
	if *seedCache != "" {
		if cfg.seedCache, err = filepath.Abs(*seedCache); err != nil {
			return err
		}
	}
	if *work == "" {
		if cfg.work, err = os.MkdirTemp("", "imgform-bench-"); err != nil {
			return err
		}
	} else {
		if cfg.work, err = filepath.Abs(*work); err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.work, 0o755); err != nil {
			return err
		}
	}
	if *keep {
		fmt.Fprintf(os.Stderr, "%s  work folder (kept): %s\n", stamp(), cfg.work)
	} else {
		defer os.RemoveAll(cfg.work)
	}

	started := time.Now()
	machine := describeMachine(ctx)
	im := (&imgform{bin: cfg.bin}).version(ctx)
	var sourceSize int64
	if cfg.source != "" {
		if sourceSize, err = fileSize(cfg.source); err != nil {
			return err
		}
	}

	var results []*scenarioResult
	var base *scenarioResult
	if slices.Contains(parts, "base") {
		base = runScenario(ctx, baseScenario, cfg)
		results = append(results, base)
	}
	if slices.Contains(parts, "variants") && ctx.Err() == nil {
		results = append(results, runScenario(ctx, variantsScenario, cfg))
	}
	var fig *exportFigures
	var figErr error
	if slices.Contains(parts, "export") && ctx.Err() == nil {
		fig, figErr = exportStage(ctx, cfg, base, *layer, levels)
	}

	var accel, warning string
	for _, res := range results {
		for _, r := range []*run{res.Full, res.Incr} {
			if r != nil && accel == "" {
				accel, warning = accelerator(r), r.accelWarning()
			}
		}
	}
	w := io.Writer(os.Stdout)
	var outFile *os.File
	if *out != "" {
		if outFile, err = os.Create(*out); err != nil {
			return err
		}
		defer outFile.Close()
		w = io.MultiWriter(os.Stdout, outFile)
	}
	rep := report{w: w}
	rep.header(started, machine, im, accel, warning, cfg, sourceSize)
	for _, res := range results {
		rep.scenario(res, sourceSize)
	}
	if slices.Contains(parts, "export") {
		rep.export(fig, figErr)
	}
	rep.loads(results, fig)
	rep.f("Bench wall time: %s.\n", fmtDur(time.Since(started)))

	var errs []error
	for _, res := range results {
		errs = append(errs, res.Err)
	}
	return errors.Join(append(errs, figErr, ctx.Err())...)
}

// exportStage finds the image to compress and runs the comparison in a folder of its own.
func exportStage(ctx context.Context, cfg *benchConfig, base *scenarioResult, layer string, levels []int) (*exportFigures, error) {
	if layer == "" {
		if base == nil {
			return nil, errors.New("the export comparison needs the base build (-only base,export) or -layer")
		}
		key, err := base.finalKey()
		if err != nil {
			return nil, err
		}
		if layer, err = finalLayer(base.Cache, key); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(cfg.work, "export")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fig, err := compareExport(ctx, layer, dir, levels, cfg.progress)
	if err != nil {
		fmt.Fprintf(cfg.progress, "%s  export: FAILED: %v\n", stamp(), err)
	}
	return fig, err
}

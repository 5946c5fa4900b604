package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// report writes the figures as Markdown, ready to paste into docs/benchmarks.md.
type report struct {
	w io.Writer
}

func (r report) f(format string, args ...any) { fmt.Fprintf(r.w, format, args...) }

func (r report) header(date time.Time, m machineInfo, im string, accel, warning string, cfg *benchConfig, sourceSize int64) {
	r.f("# make bench, %s\n\n", date.UTC().Format("2006-01-02 15:04 MST"))
	r.f("- Machine: %d cores (%s), %s, %s, kernel %s\n", m.Cores, m.CPU, m.Memory, m.OS, m.Kernel)
	r.f("- %s; %s\n", m.QEMU, m.QemuImg)
	if accel == "" {
		accel = "unknown (no guest ran)"
	} else {
		accel = strings.ToUpper(accel)
	}
	r.f("- Accelerator of the guests (from their QEMU command line): %s\n", accel)
	if warning != "" {
		r.f("- imgform's warning: %s\n", warning)
	}
	r.f("- imgform: %s (%s)\n", im, cfg.bin)
	if cfg.source != "" {
		r.f("- Source image: %s, %s\n", cfg.source, fmtMB(sourceSize))
	}
	if cfg.seedCache != "" {
		r.f("- NOTE: the caches started as copies of %s, so the \"full\" builds are not from an empty cache\n", cfg.seedCache)
	}
	r.f("\n")
}

// scenario prints figures 1, 2, 3 and 5 (and 6 for a configuration with derived images).
func (r report) scenario(res *scenarioResult, sourceSize int64) {
	sc := res.S
	r.f("## %s\n\n", sc.Example)
	if res.Full == nil {
		r.f("Not measured: %v\n\n", res.Err)
		return
	}
	full := res.Full
	o := analyzeOverhead(full)
	r.f("### Full build from an empty cache\n\n")
	r.f("| | |\n|---|---|\n")
	r.f("| wall time of `imgform apply` | %s |\n", fmtDur(o.Wall))
	if f := finishedOf(full.Events); f != nil {
		r.f("| apply_finished elapsed_ms | %s |\n", fmtDur(time.Duration(f.ElapsedMs)*time.Millisecond))
	}
	r.f("| a guest ran (QEMU alive, %d session(s), most at once %d) | %s |\n", len(full.Procs.Guests), full.Procs.MaxGuests, fmtDur(o.Guest))
	r.f("| imgform's own work (wall - QEMU alive) | %s |\n", fmtDur(o.Own))
	r.f("| **overhead share** (wall - QEMU alive) / wall | **%s** |\n", fmtPct(o.Share))
	for _, b := range o.Buckets {
		r.f("| &nbsp;&nbsp;of which %s | %s |\n", b.Name, fmtDur(b.Dur))
	}
	r.f("\n")
	r.stepTable(full)
	if tc, ok := analyzeTests(full); ok {
		r.f("The test steps (each output's final layer booted as a new instance and checked) took %s of their own, "+
			"beside the exports; they made the apply end %s later: **%s of the wall time**.\n\n",
			fmtDur(tc.Own), fmtDur(tc.Extension), fmtPct(tc.Share))
	}

	if p := planOf(full.Events); p != nil && len(p.derived()) >= 2 {
		par := analyzeParallel(full, p.derived())
		r.f("Derived images (from the events; guest = boot start to cleanup end):\n\n")
		r.f("| image | guest steps | boot to end of export |\n|---|---|---|\n")
		for _, s := range par.Spans {
			r.f("| %s | +%s to +%s (%s) | +%s to +%s |\n", s.Image,
				fmtOff(full, s.Guest.A), fmtOff(full, s.Guest.B), fmtDur(s.Guest.dur()),
				fmtOff(full, s.Whole.A), fmtOff(full, s.Whole.B))
		}
		verdict := "did NOT run in parallel"
		if par.Overlap > 0 {
			verdict = "ran in parallel"
		}
		r.f("\nThe derived images %s: their guest steps overlapped for %s (%s of the shorter one); at most %d VMs were alive at once.\n\n",
			verdict, fmtDur(par.Overlap), fmtPct(par.OverlapShare), par.MaxGuests)
	}

	r.f("### No-op apply, plan, incremental apply\n\n")
	r.f("| run | wall time | / full build | steps that ran |\n|---|---|---|---|\n")
	r.f("| full build | %s | 1 | %d |\n", fmtDur(full.Wall), len(ran(full.Steps())))
	if res.Noop != nil {
		r.f("| no-op `apply` | %s | %s | %d |\n", fmtDur(res.Noop.Wall), durRatio(res.Noop.Wall, full.Wall), len(ran(res.Noop.Steps())))
	}
	if res.Plan != nil {
		r.f("| `plan` (to_run %d) | %s | %s | - |\n", res.PlanToRun, fmtDur(res.Plan.Wall), durRatio(res.Plan.Wall, full.Wall))
	}
	if res.Incr != nil {
		r.f("| incremental `apply` | %s | %s | %s |\n", fmtDur(res.Incr.Wall), durRatio(res.Incr.Wall, full.Wall),
			strings.Join(ran(res.Incr.Steps()), ", "))
	}
	r.f("\nIncremental change: %s.\n\n", sc.Edit.What)
	if res.Incr != nil {
		io := analyzeOverhead(res.Incr)
		var parts []string
		for _, b := range io.Buckets {
			if b.Dur >= 100*time.Millisecond {
				parts = append(parts, fmt.Sprintf("%s %s", b.Name, fmtDur(b.Dur)))
			}
		}
		r.f("Incremental apply: a guest ran %s (%d session(s)), imgform's own work %s (overhead share %s): %s.\n\n",
			fmtDur(io.Guest), len(res.Incr.Procs.Guests), fmtDur(io.Own), fmtPct(io.Share), strings.Join(parts, "; "))
		r.stepTable(res.Incr)
	}

	r.f("### Cache footprint\n\n")
	r.f("| after | du (allocated) | du -b (apparent) | source + outputs | allocated / (source + outputs) | allocated by step kind |\n|---|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		fp   *footprint
		run  *run
	}{{"full build", res.FPFull, res.Full}, {"incremental build", res.FPIncr, res.Incr}} {
		if row.fp == nil || row.run == nil {
			continue
		}
		outs := outputBytes(row.run)
		r.f("| %s | %s | %s | %s + %s | %s | %s |\n", row.name, fmtMB(row.fp.DuAllocated), fmtMB(row.fp.DuApparent),
			fmtMB(sourceSize), fmtMB(outs), ratio(float64(row.fp.DuAllocated), float64(sourceSize+outs)), byKind(row.fp.ByKind))
	}
	r.f("\n")
	if res.Err != nil {
		r.f("The scenario stopped: %v\n\n", res.Err)
	}
}

// stepTable prints the steps of one apply with their start offset and elapsed time.
func (r report) stepTable(run *run) {
	r.f("| step | status | start | elapsed |\n|---|---|---|---|\n")
	for _, s := range run.Steps() {
		if s.Status == "cached" && s.Elapsed == 0 {
			continue
		}
		r.f("| %s | %s | +%s | %s |\n", s.ID, s.Status, fmtOff(run, s.Start), fmtDur(s.Elapsed))
	}
	r.f("\n")
}

func fmtOff(r *run, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return fmtDur(t.Sub(r.Start))
}

func byKind(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	slices.SortStableFunc(keys, func(a, b string) int { return cmp.Compare(m[b], m[a]) }) // largest first
	var parts []string
	for _, k := range keys {
		if m[k] >= 1e5 {
			parts = append(parts, fmt.Sprintf("%s %s", k, fmtMB(m[k])))
		}
	}
	return strings.Join(parts, ", ")
}

// export prints figure 4.
func (r report) export(fig *exportFigures, err error) {
	r.f("## Export: imgform's zstd against the zstd tool and qemu-img, on the built image\n\n")
	if fig == nil {
		r.f("Not measured: %v\n\n", err)
		return
	}
	r.f("Input: the final layer of the full build (%s) flattened with `qemu-img convert -O raw` in %s: %s raw, %s of it data (allocated).\n",
		fig.Layer, fmtDur(fig.FlattenTime), fmtMB(fig.RawSize), fmtMB(fig.RawData))
	r.f("Throughput is over the raw size (holes included); imgform's time is its compress phase only. The zstd tool is %s.\n\n", fig.ZstdVersion)
	r.f("| level | imgform size | `zstd -T0` size | size imgform / CLI | imgform time (encoder) | CLI time | imgform MB/s | CLI MB/s | throughput imgform / CLI |\n")
	r.f("|---|---|---|---|---|---|---|---|---|\n")
	for _, z := range fig.Zstd {
		r.f("| %d | %s | %s | %s | %s (%s) | %s | %s | %s | %s |\n", z.Level, fmtMB(z.OursSize), fmtMB(z.CLISize),
			ratio(float64(z.OursSize), float64(z.CLISize)), fmtDur(z.OursTime), z.EncoderDescription, fmtDur(z.CLITime),
			fmtMBps(fig.RawSize, z.OursTime), fmtMBps(fig.RawSize, z.CLITime), durRatio(z.CLITime, z.OursTime))
	}
	r.f("\n| `qemu-img convert -c -O qcow2` | size | time | MB/s |\n|---|---|---|---|\n")
	for _, q := range fig.Qcow {
		r.f("| %s clusters | %s | %s | %s |\n", q.Compression, fmtMB(q.Size), fmtDur(q.Time), fmtMBps(fig.RawSize, q.Time))
	}
	r.f("\n")
	if err != nil {
		r.f("Stopped: %v\n\n", err)
	}
}

// loads prints, for every measurement, how much CPU other processes took meanwhile.
func (r report) loads(results []*scenarioResult, fig *exportFigures) {
	r.f("## Other work on the machine during each measurement\n\n")
	r.f("CPU time of processes other than the bench and its children, over the capacity of all cores during the measurement; other QEMU processes seen in /proc (other engineers' guests).\n\n")
	r.f("| measurement | wall | others' CPU | share of the machine | other QEMUs (max, share of samples) | load average |\n|---|---|---|---|---|---|\n")
	for _, res := range results {
		for _, run := range []*run{res.Full, res.Noop, res.Plan, res.Incr} {
			if run == nil {
				continue
			}
			r.f("| %s | %s | %s | %s | %d, %s | %s |\n", run.Name, fmtDur(run.Wall), fmtDur(run.Load.Others),
				fmtPct(run.Load.OthersShare()), run.Procs.ForeignMax, fmtPct(run.Procs.ForeignShare), run.Load.Load)
		}
	}
	if fig != nil {
		for _, z := range fig.Zstd {
			for _, x := range []struct {
				name string
				l    load
			}{{fmt.Sprintf("imgform zstd %d", z.Level), z.OursLoad}, {fmt.Sprintf("zstd -T0 -%d", z.Level), z.CLILoad}} {
				r.f("| %s | %s | %s | %s | %s (start -> end) | %s |\n", x.name, fmtDur(x.l.Wall), fmtDur(x.l.Others), fmtPct(x.l.OthersShare()), x.l.Qemu, x.l.Load)
			}
		}
		for _, q := range fig.Qcow {
			r.f("| qemu-img -c %s | %s | %s | %s | %s (start -> end) | %s |\n", q.Compression, fmtDur(q.Load.Wall), fmtDur(q.Load.Others),
				fmtPct(q.Load.OthersShare()), q.Load.Qemu, q.Load.Load)
		}
	}
	r.f("\n")
}

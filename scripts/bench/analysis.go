package main

import (
	"slices"
	"strings"
	"time"
)

// bucket is a share of the wall time outside QEMU, attributed to one kind of imgform's own work.
type bucket struct {
	Name string
	Dur  time.Duration
}

// overhead splits one apply's wall time into the time a guest ran (a QEMU process was alive, as seen
// from /proc) and imgform's own work, and that own work into buckets. Each moment outside QEMU goes to
// the first bucket whose intervals cover it, so nothing is counted twice when steps run in parallel.
type overhead struct {
	Wall, Guest, Own time.Duration
	Share            float64 // Own / Wall
	Buckets          []bucket
}

func analyzeOverhead(r *run) overhead {
	window := union(span{r.Start, r.Start.Add(r.Wall)})
	alive := r.Procs.GuestAlive.intersect(window)
	rest := window.minus(alive)
	o := overhead{Wall: r.Wall, Guest: alive.total(), Own: rest.total()}
	if r.Wall > 0 {
		o.Share = float64(o.Own) / float64(r.Wall)
	}
	st := r.Steps()
	of := func(kinds ...string) spans {
		var xs []span
		for _, s := range st {
			if slices.Contains(kinds, s.Kind) && s.Status == "done" {
				xs = append(xs, span{s.Start, s.End()})
			}
		}
		return union(xs...)
	}
	// The last layer of a VM session is committed to the store after QEMU exits: from the end of the
	// image's last guest step (QEMU is then shutting down, which counts as guest time) to its
	// step_finished event, which the engine sends once the layer is committed.
	var commits []span
	for _, img := range imagesOf(st) {
		var end, fin time.Time
		for _, s := range st {
			if s.Image == img && guestKinds[s.Kind] && s.Status == "done" {
				end, fin = later(end, s.End()), later(fin, s.Finished)
			}
		}
		if !end.IsZero() {
			commits = append(commits, span{end, fin})
		}
	}
	take := func(name string, xs spans) {
		got := rest.intersect(xs)
		rest = rest.minus(xs)
		o.Buckets = append(o.Buckets, bucket{name, got.total()})
	}
	take("fetch (copy and hash the source)", of("fetch"))
	take("seed (cloud-init ISO)", of("seed"))
	take("export (flatten, compress, checksum)", of("export"))
	take("commit of the last layer after QEMU exit", union(commits...))
	take("accelerator probe (a tiny QEMU that tests KVM)", r.Procs.ProbeAlive)
	take("guest steps before QEMU starts (overlay, accelerator)", of("boot", "provision", "cleanup"))
	o.Buckets = append(o.Buckets, bucket{"start-up, plan, between steps", rest.total()})
	return o
}

// imagesOf lists the images of the steps in order of first appearance.
func imagesOf(st []stepTime) []string {
	var imgs []string
	for _, s := range st {
		if !slices.Contains(imgs, s.Image) {
			imgs = append(imgs, s.Image)
		}
	}
	return imgs
}

// imageSpan is when one image's steps ran.
type imageSpan struct {
	Image        string
	Guest, Whole span // boot to the end of cleanup; boot to the end of the export
}

// parallelism tells whether the derived images were built at the same time.
type parallelism struct {
	Spans   []imageSpan
	Overlap time.Duration // of the guest spans of the first two derived images
	// OverlapShare is Overlap over the shorter of the two guest spans: 1 means one ran entirely while
	// the other did.
	OverlapShare float64
	MaxGuests    int // most VMs alive at once, from /proc
}

func analyzeParallel(r *run, derived []string) parallelism {
	st := r.Steps()
	p := parallelism{MaxGuests: r.Procs.MaxGuests}
	for _, img := range derived {
		var is imageSpan
		is.Image = img
		for _, s := range st {
			// The seed is made at the very start, long before the parent image is ready: leave it out.
			if s.Image != img || s.Status != "done" || !guestKinds[s.Kind] && s.Kind != "export" {
				continue
			}
			sp := span{s.Start, s.End()}
			is.Whole = widen(is.Whole, sp)
			if guestKinds[s.Kind] {
				is.Guest = widen(is.Guest, sp)
			}
		}
		p.Spans = append(p.Spans, is)
	}
	if len(p.Spans) >= 2 {
		a, b := p.Spans[0].Guest, p.Spans[1].Guest
		p.Overlap = overlap(a, b)
		if shorter := min(a.dur(), b.dur()); shorter > 0 {
			p.OverlapShare = float64(p.Overlap) / float64(shorter)
		}
	}
	return p
}

func widen(a, b span) span {
	if a.A.IsZero() {
		return b
	}
	return span{earlier(a.A, b.A), later(a.B, b.B)}
}

// accelerator reads the accelerator from a guest's QEMU command line ("-accel tcg" or "accel=kvm").
func accelerator(r *run) string {
	for _, g := range r.Procs.Guests {
		f := strings.Fields(g.Cmdline)
		for i, a := range f {
			if a == "-accel" && i+1 < len(f) {
				return strings.SplitN(f[i+1], ",", 2)[0]
			}
			if _, v, ok := strings.Cut(a, "accel="); ok {
				return strings.SplitN(v, ",", 2)[0]
			}
		}
	}
	return ""
}

// testCost is what the test steps (a new instance of each output booted and checked) cost one apply: their
// own time, and how much later the apply ended because of them (they run beside the exports, so only the
// part after every other step's end lengthens the build).
type testCost struct {
	Own, Extension time.Duration
	Share          float64 // Extension / wall
}

func analyzeTests(r *run) (testCost, bool) {
	var c testCost
	var testEnd, otherEnd time.Time
	found := false
	for _, s := range r.Steps() {
		if s.Status != "done" {
			continue
		}
		if s.Kind == "test" {
			found = true
			c.Own += s.Elapsed
			testEnd = later(testEnd, s.End())
		} else {
			otherEnd = later(otherEnd, s.End())
		}
	}
	if !found {
		return c, false
	}
	if testEnd.After(otherEnd) {
		c.Extension = testEnd.Sub(otherEnd)
	}
	if r.Wall > 0 {
		c.Share = float64(c.Extension) / float64(r.Wall)
	}
	return c, true
}

package main

import (
	"slices"
	"time"
)

// span is a time interval [A, B). The bench attributes wall time to QEMU, to imgform's steps and to the
// rest by intersecting such intervals, so each moment is counted once even when steps run in parallel.
type span struct{ A, B time.Time }

func (s span) dur() time.Duration { return s.B.Sub(s.A) }

// spans is a sorted list of disjoint intervals.
type spans []span

// union merges intervals, in any order and overlapping, into sorted disjoint spans.
func union(in ...span) spans {
	var xs []span
	for _, s := range in {
		if s.B.After(s.A) {
			xs = append(xs, s)
		}
	}
	slices.SortFunc(xs, func(a, b span) int { return a.A.Compare(b.A) })
	var out spans
	for _, s := range xs {
		if n := len(out); n > 0 && !s.A.After(out[n-1].B) {
			if s.B.After(out[n-1].B) {
				out[n-1].B = s.B
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

func (x spans) total() time.Duration {
	var d time.Duration
	for _, s := range x {
		d += s.dur()
	}
	return d
}

// intersect returns the parts of x that are also in y.
func (x spans) intersect(y spans) spans {
	var out []span
	for _, a := range x {
		for _, b := range y {
			lo, hi := later(a.A, b.A), earlier(a.B, b.B)
			if hi.After(lo) {
				out = append(out, span{lo, hi})
			}
		}
	}
	return union(out...)
}

// minus returns the parts of x that are not in y.
func (x spans) minus(y spans) spans {
	out := slices.Clone(x)
	for _, b := range y {
		var next spans
		for _, a := range out {
			if !b.A.Before(a.B) || !b.B.After(a.A) {
				next = append(next, a) // no overlap
				continue
			}
			if b.A.After(a.A) {
				next = append(next, span{a.A, b.A})
			}
			if b.B.Before(a.B) {
				next = append(next, span{b.B, a.B})
			}
		}
		out = next
	}
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// overlap is how long two intervals ran at the same time.
func overlap(a, b span) time.Duration {
	return max(0, earlier(a.B, b.B).Sub(later(a.A, b.A)))
}

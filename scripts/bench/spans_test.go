package main

import (
	"testing"
	"time"
)

// The overhead figure rests on these: each moment outside QEMU must be counted once.
func TestSpans(t *testing.T) {
	t0 := time.Unix(0, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	sp := func(a, b int) span { return span{at(a), at(b)} }

	u := union(sp(5, 8), sp(0, 2), sp(1, 3), sp(8, 9))
	if len(u) != 2 || u.total() != 7*time.Second {
		t.Fatalf("union = %v, total %v; want [0,3) [5,9)", u, u.total())
	}
	window := union(sp(0, 10))
	gaps := window.minus(u)
	if gaps.total() != 3*time.Second || len(gaps) != 2 {
		t.Errorf("minus = %v, want [3,5) [9,10)", gaps)
	}
	if got := gaps.intersect(union(sp(4, 10))).total(); got != 2*time.Second {
		t.Errorf("intersect = %v, want 2s", got)
	}
	if got := overlap(sp(0, 5), sp(3, 9)); got != 2*time.Second {
		t.Errorf("overlap = %v, want 2s", got)
	}
	if got := overlap(sp(0, 2), sp(3, 9)); got != 0 {
		t.Errorf("overlap of disjoint spans = %v, want 0", got)
	}
}

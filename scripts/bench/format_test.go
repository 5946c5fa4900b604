package main

import "testing"

func TestRatio(t *testing.T) {
	for _, c := range []struct {
		a, b float64
		want string
	}{{0.04, 1190, "0.000034"}, {0.06, 1190, "0.000050"}, {316, 1190, "0.27"}, {1027, 137, "7.50"}, {1, 0, "-"}, {0, 5, "0"}} {
		if got := ratio(c.a, c.b); got != c.want {
			t.Errorf("ratio(%v, %v) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

package main

import (
	"fmt"
	"math"
	"strconv"
	"time"
)

// fmtDur prints a duration the way docs/benchmarks.md writes them: "0.21 s", "41.2 s", "9 min 30 s".
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	default:
		d = d.Round(time.Second)
		return fmt.Sprintf("%d min %02d s", int(d.Minutes()), int(d.Seconds())%60)
	}
}

// fmtMB prints bytes in decimal megabytes, as the existing figures do.
func fmtMB(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// fmtMBps prints a throughput over n bytes.
func fmtMBps(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MB/s", float64(n)/1e6/d.Seconds())
}

func fmtPct(x float64) string { return fmt.Sprintf("%.1f %%", 100*x) }

// ratio prints a/b with enough digits for both 0.0004 and 8.2.
func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	r := a / b
	switch {
	case r == 0:
		return "0"
	case r < 0.01:
		// Two significant digits, without an exponent: 0.00003, not 3e-05.
		return strconv.FormatFloat(r, 'f', 1-int(math.Floor(math.Log10(r))), 64)
	case r < 10:
		return fmt.Sprintf("%.2f", r)
	default:
		return fmt.Sprintf("%.1f", r)
	}
}

func durRatio(a, b time.Duration) string { return ratio(a.Seconds(), b.Seconds()) }

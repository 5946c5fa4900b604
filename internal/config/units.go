package config

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/zclconf/go-cty/cty"
)

// Size is a number of bytes.
type Size int64

const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
	TiB Size = 1 << 40
)

// String prints the size in the largest binary unit that divides it, so "4GiB" reads back as "4GiB".
func (s Size) String() string {
	for _, u := range []struct {
		n    Size
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s != 0 && s%u.n == 0 {
			return fmt.Sprintf("%d%s", s/u.n, u.name)
		}
	}
	return fmt.Sprintf("%dB", int64(s))
}

var sizePattern = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$`)

// sizeUnits follows QEMU and Packer: a bare letter (K, M, G, T) is binary, as "1024M" means MiB to both;
// KB/MB/GB/TB are decimal, KiB/MiB/GiB/TiB binary.
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ParseSize reads "4GiB", "1024M", "1.5G" or "512MB". A plain number (a string of digits or an HCL number) is
// taken in bareUnit, which is MiB for memory and disk sizes as in Packer's QEMU builder.
func ParseSize(s string, bareUnit Size) (Size, error) {
	m := sizePattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size; write a number with a unit such as \"4GiB\", \"1024M\" or \"512MB\"", s)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: %w", s, err)
	}
	unit := strings.ToLower(m[2])
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q; write a size like \"4GiB\" or \"1024M\" (units: B, K, KiB, KB, M, MiB, MB, G, GiB, GB, T, TiB, TB)", s, m[2])
	}
	if unit == "" {
		mult = float64(bareUnit)
	}
	bytes := n * mult
	if bytes > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if bytes != math.Trunc(bytes) {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	return Size(bytes), nil
}

// sizeFromValue accepts a string with a unit or a whole number (in bareUnit).
func sizeFromValue(v cty.Value, bareUnit Size) (Size, error) {
	switch v.Type() {
	case cty.Number:
		bf := v.AsBigFloat()
		if !bf.IsInt() || bf.Sign() < 0 {
			return 0, fmt.Errorf("%s is not a whole, non-negative number", bf.Text('f', -1))
		}
		i, acc := bf.Int64()
		if acc != big.Exact || i > math.MaxInt64/int64(bareUnit) {
			return 0, fmt.Errorf("%s is too large", bf.Text('f', -1))
		}
		return Size(i) * bareUnit, nil
	case cty.String:
		return ParseSize(v.AsString(), bareUnit)
	}
	return 0, fmt.Errorf("a size is a string such as \"4GiB\" or a number, not %s", v.Type().FriendlyName())
}

// ParseDuration reads Go durations ("90s", "5m", "1h30m") and also a plain number of seconds.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write it like \"90s\", \"5m\" or \"1h30m\"", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be longer than zero", s)
	}
	return d, nil
}

var agePart = regexp.MustCompile(`([0-9]+)([a-z]+)`)

// ageUnits are the units of ParseAge: Go's hours, minutes and seconds, and the days and weeks that a
// freshness rule is written in.
var ageUnits = map[string]time.Duration{"w": 7 * 24 * time.Hour, "d": 24 * time.Hour, "h": time.Hour, "m": time.Minute, "s": time.Second}

// ParseAge reads an age such as "7d", "2w", "36h" or "1d12h" (w, d, h, m, s; no fractions), as refresh_every
// takes it: Go's durations stop at hours, and nobody writes a week as "168h".
func ParseAge(s string) (time.Duration, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	var total time.Duration
	rest := agePart.ReplaceAllStringFunc(t, func(part string) string {
		m := agePart.FindStringSubmatch(part)
		unit, ok := ageUnits[m[2]]
		n, err := strconv.ParseInt(m[1], 10, 32)
		if !ok || err != nil {
			return part
		}
		total += time.Duration(n) * unit
		return ""
	})
	if t == "" || rest != "" {
		return 0, fmt.Errorf("%q is not an age; write it like \"7d\", \"2w\" or \"36h\" (w, d, h, m, s)", s)
	}
	if total <= 0 {
		return 0, fmt.Errorf("%q must be longer than zero", s)
	}
	return total, nil
}

// FormatAge prints an age the way ParseAge reads it, in whole days when it has them: "9d", "7d12h", "3h".
func FormatAge(d time.Duration) string {
	var b strings.Builder
	for _, u := range []struct {
		name string
		n    time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}} {
		if d >= u.n {
			fmt.Fprintf(&b, "%d%s", d/u.n, u.name)
			d %= u.n
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return b.String()
}

package config

import (
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
)

func TestParseSize(t *testing.T) {
	ok := map[string]Size{
		"4GiB": 4 * GiB, "4G": 4 * GiB, "4gb": 4_000_000_000, "1024M": 1024 * MiB, "1024": 1024 * MiB,
		"512MiB": 512 * MiB, "1.5G": 1536 * MiB, "10 KiB": 10 * KiB, "1T": TiB, "100B": 100,
	}
	for in, want := range ok {
		got, err := ParseSize(in, MiB)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "4 gigabytes", "-1G", "1.3B", "99999999999999T", "4,5G"} {
		if got, err := ParseSize(in, MiB); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestSizeString(t *testing.T) {
	for s, want := range map[Size]string{4 * GiB: "4GiB", 1536 * MiB: "1536MiB", 100: "100B", 0: "0B", 3 * KiB: "3KiB"} {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
	}
}

func TestSizeFromNumber(t *testing.T) {
	if got, err := sizeFromValue(cty.NumberIntVal(2048), MiB); err != nil || got != 2*GiB {
		t.Errorf("2048 = %d, %v", got, err)
	}
	for _, v := range []cty.Value{cty.NumberFloatVal(1.5), cty.NumberIntVal(-1), cty.True} {
		if _, err := sizeFromValue(v, MiB); err == nil {
			t.Errorf("%#v accepted as a size", v)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"5m": 5 * time.Minute, "90s": 90 * time.Second, "1h30m": 90 * time.Minute, "120": 2 * time.Minute} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "5 minutes", "-1m", "0s", "m"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
}

func TestCheckChecksum(t *testing.T) {
	hex64 := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	good := []string{"none", "sha256:" + hex64, "sha512:" + hex64 + hex64, "md5:0123456789abcdef0123456789abcdef",
		"file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS", "file:./SHA256SUMS", "file:/srv/SHA256SUMS"}
	for _, c := range good {
		if err := CheckChecksum(c); err != nil {
			t.Errorf("CheckChecksum(%q) = %v", c, err)
		}
	}
	bad := map[string]string{
		hex64:                  `write it as "sha256:`,
		"sha256:" + hex64[:10]: "has 64 hex digits",
		"sha265:" + hex64:      `Did you mean "sha256"?`,
		"sha256:xyz":           "not hexadecimal",
		"file:":                "not a URL",
		"file:SHA256SUMS":      "neither a URL nor a path",
		"whatever":             "is not a checksum",
	}
	for c, want := range bad {
		err := CheckChecksum(c)
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("CheckChecksum(%q) = %v, want an error containing %q", c, err, want)
		}
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "36h": 36 * time.Hour, "1d12h": 36 * time.Hour,
		" 90m ": 90 * time.Minute, "1w 2d": 9 * 24 * time.Hour, "45s": 45 * time.Second,
	} {
		got, err := ParseAge(in)
		if err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "7", "7 days", "1.5d", "0d", "d", "-1d", "7y"} {
		if got, err := ParseAge(in); err == nil {
			t.Errorf("ParseAge(%q) = %v, want an error", in, got)
		}
	}
	for d, want := range map[time.Duration]string{9 * 24 * time.Hour: "9d", 180 * time.Hour: "7d12h", 3 * time.Hour: "3h", 0: "0s", 90 * time.Second: "1m30s"} {
		if got := FormatAge(d); got != want {
			t.Errorf("FormatAge(%v) = %q, want %q", d, got, want)
		}
	}
}

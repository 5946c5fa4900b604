package state

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	tests := map[string]Key{
		"zero":    {},
		"derived": testKey("fetch debian-12"),
		"ones":    func() (k Key) { copy(k[:], strings.Repeat("\xff", KeySize)); return k }(),
	}
	for name, k := range tests {
		t.Run(name, func(t *testing.T) {
			s := k.String()
			if len(s) != 64 || s != strings.ToLower(s) {
				t.Fatalf("String() = %q, want 64 lowercase hex digits", s)
			}
			got, err := ParseKey(s)
			if err != nil || got != k {
				t.Fatalf("ParseKey(String()) = %v, %v; want %v", got, err, k)
			}
			if k.Short() != s[:12] {
				t.Errorf("Short() = %q, want %q", k.Short(), s[:12])
			}
			if k.IsZero() != (name == "zero") {
				t.Errorf("IsZero() = %v", k.IsZero())
			}
			b, err := json.Marshal(k)
			if err != nil || string(b) != `"`+s+`"` {
				t.Fatalf("json.Marshal = %s, %v", b, err)
			}
			var back Key
			if err := json.Unmarshal(b, &back); err != nil || back != k {
				t.Fatalf("json round trip = %v, %v", back, err)
			}
		})
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := map[string]string{
		"empty":     "",
		"short":     "abcd",
		"long":      strings.Repeat("a", 66),
		"not hex":   strings.Repeat("z", 64),
		"with 0x":   "0x" + strings.Repeat("a", 62),
		"one short": strings.Repeat("a", 63),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if k, err := ParseKey(in); err == nil {
				t.Fatalf("ParseKey(%q) = %v, want an error", in, k)
			}
		})
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add(testKey("x").String())
	f.Add("")
	f.Add(strings.Repeat("A", 64))
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		if k.String() != strings.ToLower(s) {
			t.Fatalf("ParseKey(%q).String() = %q", s, k.String())
		}
	})
}

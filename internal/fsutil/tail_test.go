package fsutil

import (
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestTailBuffer(t *testing.T) {
	tests := map[string]struct {
		limit  int
		writes []string
		want   string
	}{
		"nothing":               {8, nil, ""},
		"under the limit":       {8, []string{"0123", "45"}, "012345"},
		"exactly the limit":     {8, []string{"0123", "4567"}, "01234567"},
		"cut":                   {8, []string{"0123", "4567", "89ab"}, "...456789ab"},
		"one write over":        {4, []string{"0123456789"}, "...6789"},
		"many cuts":             {3, []string{"ab", "cd", "ef", "gh", "ij", "kl", "mn"}, "...lmn"},
		"character cut in two":  {4, []string{"xé", "abc"}, "...abc"},
		"four-byte character":   {6, []string{"x😀", "ab"}, "...😀ab"},
		"not UTF-8":             {8, []string{"a\xffb"}, "a?b"},
		"limit zero":            {0, []string{"abc"}, "..."},
		"limit zero, no writes": {0, nil, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := NewTailBuffer(tc.limit)
			for _, s := range tc.writes {
				if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			if got := b.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTailBufferConcurrent writes whole lines from several goroutines, as exec does with stdout and
// stderr; run with -race. The tail holds complete lines only after its first, cut one.
func TestTailBufferConcurrent(t *testing.T) {
	const limit = 100
	b := NewTailBuffer(limit)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			line := strings.Repeat(string(rune('a'+g)), 9) + "\n"
			for range 1000 {
				if _, err := b.Write([]byte(line)); err != nil {
					t.Error(err)
				}
				_ = b.String()
			}
		})
	}
	wg.Wait()
	got := b.String()
	if !strings.HasPrefix(got, "...") || len(got) != len("...")+limit || !utf8.ValidString(got) {
		t.Fatalf("String() = %q", got)
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	for _, l := range lines[1:] {
		if len(l) != 9 || strings.Count(l, l[:1]) != 9 {
			t.Errorf("line %q mixes two writes", l)
		}
	}
}

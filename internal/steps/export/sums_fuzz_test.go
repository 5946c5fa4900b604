package export

import (
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// maxSumsErrLen bounds the message of an error about an existing SHA256SUMS, which anyone who can write
// the output folder controls: the error names the file and the line, it does not paste the line whole.
const maxSumsErrLen = 512

// FuzzParseGNUSums checks the reader of an existing SHA256SUMS that WriteSumEntries merges into: accepted
// entries are plain names with 64-hex sums, writing them back as WriteSumEntries does and reading that
// again gives the same entries, and errors stay short.
func FuzzParseGNUSums(f *testing.F) {
	sum := strings.Repeat("0123456789abcdef", 4)
	f.Add(sum + "  debian-12.qcow2\n" + strings.ToUpper(sum) + " *debian-12.raw\n")
	f.Add(unverifiedPrefix + sum + "  a.qcow2\n\n  \n" + sum + "  b c\n")
	f.Add(sum + "  *star\n" + sum + "   lead\n" + sum + "  trail \n")
	f.Add(sum + "  a/b\n")
	f.Add(sum + "  a\r\n")
	f.Add(sum[:63] + "  short\n")
	f.Add("# a comment\n")
	f.Add(sum + "  " + strings.Repeat("x", 100000))
	f.Add(strings.Repeat("y", 100000) + "\n")
	f.Fuzz(func(t *testing.T, data string) {
		const path = "/out/SHA256SUMS"
		got := map[string]SumEntry{}
		if err := parseGNUSums(path, []byte(data), got); err != nil {
			if n := len(err.Error()); n > maxSumsErrLen {
				t.Fatalf("error of %d bytes: %.200s...", n, err)
			}
			return
		}
		for name, e := range got {
			if e.Name != name || checkSumEntry(e) != nil || strings.ContainsAny(name, "/\\\n\r") {
				t.Fatalf("accepted entry %+v", e)
			}
			if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != 32 || e.SHA256 != strings.ToLower(e.SHA256) {
				t.Fatalf("accepted sum %q for %q", e.SHA256, name)
			}
		}
		back := map[string]SumEntry{}
		if err := parseGNUSums(path, formatSums(got), back); err != nil {
			t.Fatalf("entries written back do not read: %v", err)
		}
		if !maps.Equal(got, back) {
			t.Fatalf("round trip: %v, then %v", got, back)
		}
	})
}

// formatSums writes entries as WriteSumEntries does.
func formatSums(byName map[string]SumEntry) []byte {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		e := byName[name]
		if e.Unverified {
			b.WriteString(unverifiedPrefix)
		}
		fmt.Fprintf(&b, "%s  %s\n", e.SHA256, name)
	}
	return []byte(b.String())
}

package fetch

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// This file parses checksum ("sums") files. go-getter has a parser too (checksum.go, parseChecksumLine), but it
// skips any line it cannot read, so an HTML error page or a truncated file ends as "no checksum found"
// instead of naming the bad line; it cannot list what the file does contain; and a line of three or more
// words whose first word is hex is taken as the checksum of whatever file is asked for. The parser here is
// strict for those reasons, and understands the same GNU and BSD styles.

// sumEntry is one checksum line of a sums file.
type sumEntry struct {
	line int       // 1-based line number, for messages
	alg  Algorithm // "" when tag names an algorithm imgform does not support
	tag  string    // the BSD tag as written ("SHA384"), or the guessed type of a GNU line
	hex  string    // lowercase
	name string    // the file name as listed, without the GNU binary marker; "" for a bare digest
}

// SyntaxError reports a line of a sums file that is neither a GNU nor a BSD checksum line.
type SyntaxError struct {
	File   string // the sums file's URL or path
	Line   int
	Text   string
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("malformed sums file %s: line %d: %s: %q", e.File, e.Line, e.Reason, clip(e.Text, 100))
}

// clip shortens s, a piece of a downloaded file, to about n bytes for a message: a mirror can send one
// line of many megabytes.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// NoEntryError reports a sums file that does not list the image.
type NoEntryError struct {
	Name   string   // the image's file name
	File   string   // the sums file's URL or path
	Listed []string // the names the file does list
}

func (e *NoEntryError) Error() string {
	const maxListed = 20
	base := e.File
	if i := strings.LastIndexAny(base, `/\`); i >= 0 && i < len(base)-1 {
		base = base[i+1:]
	}
	msg := fmt.Sprintf("no entry for %s in %s (%s)", e.Name, base, e.File)
	listed := make([]string, 0, min(len(e.Listed), maxListed))
	for _, name := range e.Listed[:min(len(e.Listed), maxListed)] {
		listed = append(listed, clip(name, 100))
	}
	switch {
	case len(e.Listed) == 0:
		return msg + ": the file lists no files"
	case len(e.Listed) > maxListed:
		return fmt.Sprintf("%s: the file lists %s and %d more", msg, strings.Join(listed, ", "), len(e.Listed)-maxListed)
	default:
		return msg + ": the file lists " + strings.Join(listed, ", ")
	}
}

// bsdLine matches "SHA256 (name) = hex"; the name is greedy so that names holding parentheses still parse.
var bsdLine = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*) ?\((.*)\) ?= ?([0-9A-Fa-f]+)$`)

// parseSums reads a sums file in GNU style ("<hex>  <name>", "<hex> *<name>") or BSD style
// ("SHA256 (<name>) = <hex>"), the two mixed if need be. Blank lines and "#" comments are skipped. A PGP
// clear-signed file is read as the body it signs (pgp.go); the signature is not checked. A file holding a
// single bare digest (a ".sha256" sidecar, or "sha256sum < f" output naming "-") yields one entry with an
// empty name.
func parseSums(file string, data []byte) ([]sumEntry, error) {
	entries, _, err := parseSignedSums(file, data)
	return entries, err
}

// parseSignedSums is parseSums that also tells whether the file was clear-signed.
func parseSignedSums(file string, data []byte) ([]sumEntry, bool, error) {
	lines, signed, err := signedBody(file, data)
	if err != nil {
		return nil, false, err
	}
	var entries []sumEntry
	for _, l := range lines {
		trimmed := strings.TrimSpace(l.text)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		e, reason := parseSumLine(l.text)
		if reason != "" {
			return nil, false, &SyntaxError{File: file, Line: l.no, Text: trimmed, Reason: reason}
		}
		e.line = l.no
		entries = append(entries, e)
	}
	for _, e := range entries {
		if e.name == "" && len(entries) > 1 {
			return nil, false, &SyntaxError{File: file, Line: e.line, Text: e.hex,
				Reason: "a digest without a file name is only allowed as the sole entry"}
		}
	}
	return entries, signed, nil
}

// parseSumLine reads one non-blank line; a non-empty reason says why it is malformed.
func parseSumLine(line string) (sumEntry, string) {
	if m := bsdLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
		e := sumEntry{tag: m[1], hex: strings.ToLower(m[3]), name: m[2]}
		if e.name == "" {
			return e, "empty file name"
		}
		if a, ok := algorithmFromName(m[1]); ok {
			if len(e.hex) != a.hexLen() {
				return e, fmt.Sprintf("a %s digest has %d hex digits, this one has %d", m[1], a.hexLen(), len(e.hex))
			}
			e.alg = a
		}
		return e, ""
	}
	return parseGNULine(line)
}

// parseGNULine reads "<hex>  <name>", "<hex> *<name>" (also shasum's "?" and "^" markers), a single space
// as some tools write it, a bare "<hex>", and GNU's escaped form: a leading backslash means the name
// holds "\\" and "\n" escapes.
func parseGNULine(line string) (sumEntry, string) {
	escaped := strings.HasPrefix(line, `\`)
	if escaped {
		line = line[1:]
	}
	digest, rest, hasName := strings.Cut(line, " ")
	if !hasName {
		digest, rest, hasName = strings.Cut(line, "\t")
	}
	if _, err := hex.DecodeString(digest); err != nil || digest == "" {
		return sumEntry{}, `not a GNU ("<hex>  <name>") or BSD ("SHA256 (<name>) = <hex>") checksum line`
	}
	alg, ok := algorithmFromHexLen(len(digest))
	if !ok {
		return sumEntry{}, fmt.Sprintf("a digest of %d hex digits matches no supported algorithm (md5, sha1, sha256, sha512)", len(digest))
	}
	e := sumEntry{alg: alg, tag: string(alg), hex: strings.ToLower(digest)}
	if !hasName || strings.TrimSpace(rest) == "" {
		return e, ""
	}
	if rest != "" && strings.ContainsRune(" *?^", rune(rest[0])) {
		rest = rest[1:]
	}
	if escaped {
		rest = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(rest)
	}
	if rest == "-" { // "sha256sum < file" names stdin: a bare digest
		return e, ""
	}
	if rest == "" {
		return e, "empty file name"
	}
	e.name = rest
	return e, ""
}

// matchSums picks the entry for the image named name (its base name) or relPath (its path relative to the
// sums file's folder, when they share a server). Several entries may match when a file lists one image
// under several algorithms: the strongest wins, and two different digests of one algorithm are an error.
func matchSums(file, name, relPath string, entries []sumEntry) (Checksum, error) {
	want := func(listed string) bool {
		listed = strings.TrimPrefix(listed, "./")
		return listed == "" || listed == name || (relPath != "" && listed == relPath)
	}
	var matched []sumEntry
	for _, e := range entries {
		if want(e.name) {
			matched = append(matched, e)
		}
	}
	if len(matched) == 0 {
		listed := make([]string, 0, len(entries))
		for _, e := range entries {
			if !slices.Contains(listed, e.name) {
				listed = append(listed, e.name)
			}
		}
		return Checksum{}, &NoEntryError{Name: name, File: file, Listed: listed}
	}
	for _, alg := range algorithms {
		var pick *sumEntry
		for i := range matched {
			e := &matched[i]
			if e.alg != alg {
				continue
			}
			if pick != nil && pick.hex != e.hex {
				return Checksum{}, fmt.Errorf("sums file %s lists %s twice with different %s digests (lines %d and %d)",
					file, name, alg, pick.line, e.line)
			}
			pick = e
		}
		if pick != nil {
			return Checksum{Type: alg, Value: pick.hex}, nil
		}
	}
	var tags []string
	for _, e := range matched {
		tags = append(tags, e.tag)
	}
	return Checksum{}, fmt.Errorf("sums file %s lists %s only with unsupported algorithms (%s); supported: sha512, sha256, sha1, md5",
		file, name, clip(strings.Join(tags, ", "), 200))
}

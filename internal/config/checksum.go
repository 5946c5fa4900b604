package config

import (
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
)

// checksumLengths are the hex lengths of the digests go-getter verifies.
var checksumLengths = map[string]int{"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}

// CheckChecksum accepts "none", "<type>:<hex>" and "file:<url>" (a GNU or BSD style sums file). A bare hex
// string is refused on purpose: naming the type makes a SHA-256 pasted where a SHA-512 was meant an error.
func CheckChecksum(s string) error {
	if s == "none" {
		return nil
	}
	typ, value, ok := strings.Cut(s, ":")
	if !ok {
		if _, err := hex.DecodeString(s); err == nil {
			if t := typeForLength(len(s)); t != "" {
				return fmt.Errorf("the checksum has no type; write it as %q", t+":"+s)
			}
		}
		return fmt.Errorf("%q is not a checksum; write \"sha256:<hex>\", \"sha512:<hex>\", \"file:<url of a sums file>\" or \"none\"", s)
	}
	if typ == "file" {
		u, err := url.Parse(value)
		if err != nil || value == "" {
			return fmt.Errorf("%q is not a URL of a sums file: write it like \"file:https://example.org/SHA512SUMS\"", value)
		}
		if u.Scheme == "" && !strings.HasPrefix(value, "/") && !strings.HasPrefix(value, ".") {
			return fmt.Errorf("%q is neither a URL nor a path; write it like \"file:https://example.org/SHA512SUMS\" or \"file:./SHA256SUMS\"", value)
		}
		return nil
	}
	want, known := checksumLengths[typ]
	if !known {
		return fmt.Errorf("unknown checksum type %q; use sha256, sha512, sha1, md5 or file%s", typ, suggestName(typ, []string{"sha256", "sha512", "sha1", "md5", "file"}))
	}
	if _, err := hex.DecodeString(value); err != nil {
		return fmt.Errorf("the %s checksum %q is not hexadecimal", typ, value)
	}
	if len(value) != want {
		hint := ""
		if t := typeForLength(len(value)); t != "" {
			hint = fmt.Sprintf("; its length fits %s, did you mean %q?", t, t+":"+value)
		}
		return fmt.Errorf("a %s checksum has %d hex digits, this one has %d%s", typ, want, len(value), hint)
	}
	return nil
}

func typeForLength(n int) string {
	for t, l := range checksumLengths {
		if l == n {
			return t
		}
	}
	return ""
}

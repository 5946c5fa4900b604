package fetch

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"

	getter "github.com/hashicorp/go-getter/v2"
)

// Algorithm names the hash function a checksum was computed with.
type Algorithm string

// The algorithms go-getter can verify, and therefore the only ones imgform accepts.
const (
	MD5    Algorithm = "md5"
	SHA1   Algorithm = "sha1"
	SHA256 Algorithm = "sha256"
	SHA512 Algorithm = "sha512"
)

// algorithms lists the supported algorithms from the strongest to the weakest: when a sums file lists
// one image under several algorithms, the first one found here wins.
var algorithms = []Algorithm{SHA512, SHA256, SHA1, MD5}

// hexLen is the length in hex digits of a digest; it is also how a bare value's algorithm is guessed,
// as go-getter and GNU-style sums files do.
func (a Algorithm) hexLen() int {
	switch a {
	case MD5:
		return 2 * md5.Size
	case SHA1:
		return 2 * sha1.Size
	case SHA256:
		return 2 * sha256.Size
	case SHA512:
		return 2 * sha512.Size
	}
	return 0
}

// newHash returns a fresh hash for a; it is only called for supported algorithms.
func (a Algorithm) newHash() hash.Hash {
	switch a {
	case MD5:
		return md5.New()
	case SHA1:
		return sha1.New()
	case SHA512:
		return sha512.New()
	default:
		return sha256.New()
	}
}

// Weak tells whether a is broken as a security hash (md5, sha1): files with the same digest can be made, so
// a digest in it catches a damaged download but does not prove that the file is the one its publisher
// meant when a hostile mirror serves it. They are accepted, for old mirrors that publish nothing else; the
// fetch kind warns at plan time.
func (a Algorithm) Weak() bool { return a == MD5 || a == SHA1 }

// algorithmFromName maps a name as written in a checksum ("sha256") or a BSD line tag ("SHA256",
// "SHA2-256") to an Algorithm.
func algorithmFromName(name string) (Algorithm, bool) {
	switch strings.ToLower(name) {
	case "md5":
		return MD5, true
	case "sha1", "sha-1":
		return SHA1, true
	case "sha256", "sha-256", "sha2-256":
		return SHA256, true
	case "sha512", "sha-512", "sha2-512":
		return SHA512, true
	}
	return "", false
}

// algorithmFromHexLen guesses the algorithm of a bare hex digest from its length.
func algorithmFromHexLen(n int) (Algorithm, bool) {
	for _, a := range algorithms {
		if a.hexLen() == n {
			return a, true
		}
	}
	return "", false
}

// Checksum is a concrete digest of an image: an algorithm and a lowercase hex value. It goes into the key
// of the fetch step, so two spellings of the same digest must compare equal: ParseChecksum
// normalises case.
type Checksum struct {
	Type  Algorithm
	Value string
}

// String renders the checksum as "type:value", the form ParseChecksum reads back.
func (c Checksum) String() string {
	if c.IsZero() {
		return ""
	}
	return string(c.Type) + ":" + c.Value
}

// IsZero reports whether c is the absent checksum.
func (c Checksum) IsZero() bool { return c.Type == "" && c.Value == "" }

// ParseChecksum reads a concrete checksum: "sha256:<hex>", "sha512:<hex>", "sha1:<hex>", "md5:<hex>", or a
// bare hex value whose algorithm is guessed from its length (as go-getter does). A "file:" checksum names
// a sums file and is rejected here: Fetcher.ResolveChecksum turns it into a concrete one.
func ParseChecksum(s string) (Checksum, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Checksum{}, errors.New("empty checksum")
	}
	typ, value, typed := strings.Cut(s, ":")
	if !typed {
		value = typ
	}
	if strings.EqualFold(typ, "file") && typed {
		return Checksum{}, fmt.Errorf("checksum %q names a sums file: resolve it with ResolveChecksum", s)
	}
	if _, err := hex.DecodeString(value); err != nil || value == "" {
		return Checksum{}, fmt.Errorf("checksum %q: value is not hex", s)
	}
	var alg Algorithm
	if typed {
		a, ok := algorithmFromName(typ)
		if !ok {
			return Checksum{}, fmt.Errorf("checksum %q: unsupported type %q (want sha256, sha512, sha1, md5 or file)", s, typ)
		}
		if len(value) != a.hexLen() {
			return Checksum{}, fmt.Errorf("checksum %q: a %s value has %d hex digits, this one has %d", s, a, a.hexLen(), len(value))
		}
		alg = a
	} else {
		a, ok := algorithmFromHexLen(len(value))
		if !ok {
			return Checksum{}, fmt.Errorf("checksum %q: %d hex digits match no supported type; write it as type:value", s, len(value))
		}
		alg = a
	}
	return Checksum{Type: alg, Value: strings.ToLower(value)}, nil
}

// MismatchError reports an object whose content does not have the expected checksum. Both sums are full
// so a user can compare them with what the publisher shows.
type MismatchError struct {
	URL      string // the source, with any password redacted
	Expected Checksum
	Actual   Checksum
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("checksum mismatch for %s: expected %s, got %s", e.URL, e.Expected, e.Actual)
}

// hashFile digests the file at path with alg.
func hashFile(ctx context.Context, alg Algorithm, path string) (sum Checksum, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return Checksum{}, 0, err
	}
	defer closeErr(f, &err)
	h := alg.newHash()
	n, err := getter.Copy(ctx, h, f) // stops between chunks when ctx is done
	if err != nil {
		return Checksum{}, n, err
	}
	return Checksum{Type: alg, Value: hex.EncodeToString(h.Sum(nil))}, n, nil
}

// closeErr closes c and reports its error through *err unless an earlier error is already there; it keeps
// deferred Close calls from dropping errors.
func closeErr(c io.Closer, err *error) {
	if cerr := c.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

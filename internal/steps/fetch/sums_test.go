package fetch

import (
	"errors"
	"strings"
	"testing"
)

// TestParseSums reads sums files of every style and rejects malformed ones, naming the line.
func TestParseSums(t *testing.T) {
	a256, b256 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	a512 := strings.Repeat("c", 128)
	cases := map[string]struct {
		data     string
		name     string // the image to look up
		relPath  string
		want     Checksum
		wantErr  string
		wantLine int // for a *SyntaxError
	}{
		"gnu text mode":           {data: a256 + "  x.qcow2\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"gnu binary mode":         {data: a256 + " *x.qcow2\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"gnu single space":        {data: a256 + " x.qcow2\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"gnu tab":                 {data: a256 + "\tx.qcow2\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"gnu name with spaces":    {data: a256 + "  my image.qcow2\n", name: "my image.qcow2", want: Checksum{SHA256, a256}},
		"gnu escaped name":        {data: `\` + a256 + `  a\\b.qcow2` + "\n", name: `a\b.qcow2`, want: Checksum{SHA256, a256}},
		"gnu upper-case hex":      {data: strings.ToUpper(a256) + "  x.qcow2", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"gnu sha512":              {data: a512 + "  x.qcow2\n", name: "x.qcow2", want: Checksum{SHA512, a512}},
		"gnu md5":                 {data: strings.Repeat("d", 32) + "  x.qcow2\n", name: "x.qcow2", want: Checksum{MD5, strings.Repeat("d", 32)}},
		"gnu sha1":                {data: strings.Repeat("e", 40) + "  x.qcow2\n", name: "x.qcow2", want: Checksum{SHA1, strings.Repeat("e", 40)}},
		"bsd":                     {data: "SHA256 (x.qcow2) = " + a256 + "\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"bsd parentheses in name": {data: "SHA256 (x (1).qcow2) = " + a256 + "\n", name: "x (1).qcow2", want: Checksum{SHA256, a256}},
		"bsd compact":             {data: "SHA512(x.qcow2)= " + a512 + "\n", name: "x.qcow2", want: Checksum{SHA512, a512}},
		"bsd sha2-256 tag":        {data: "SHA2-256 (x.qcow2) = " + a256 + "\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"dot slash":               {data: a256 + "  ./x.qcow2\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"relative path":           {data: b256 + "  arm64/x.qcow2\n" + a256 + "  amd64/x.qcow2\n", name: "x.qcow2", relPath: "amd64/x.qcow2", want: Checksum{SHA256, a256}},
		"comments and blanks":     {data: "# made by hand\n\n" + a256 + "  x.qcow2\n\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"bare digest":             {data: a256 + "\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"stdin digest":            {data: a256 + "  -\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"same digest twice":       {data: a256 + "  x.qcow2\n" + a256 + " *./x.qcow2\n", name: "x.qcow2", want: Checksum{SHA256, a256}},
		"unsupported algorithm listed for another file": {
			data: "SHA384 (y.qcow2) = " + strings.Repeat("f", 96) + "\nSHA256 (x.qcow2) = " + a256 + "\n",
			name: "x.qcow2", want: Checksum{SHA256, a256},
		},
		"pgp armour": {
			data: "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n- " + a256 + "  x.qcow2\n-----BEGIN PGP SIGNATURE-----\nxyz\n-----END PGP SIGNATURE-----\n",
			name: "x.qcow2", want: Checksum{SHA256, a256},
		},

		"missing":           {data: a256 + "  y.qcow2\n" + b256 + "  z.raw\n", name: "x.qcow2", wantErr: "no entry for x.qcow2 in SUMS (https://example.org/SUMS): the file lists y.qcow2, z.raw"},
		"empty file":        {data: "", name: "x.qcow2", wantErr: "the file lists no files"},
		"html page":         {data: "<!DOCTYPE html>\n<html>\n", name: "x.qcow2", wantErr: "not a GNU", wantLine: 1},
		"bad hex":           {data: a256 + "  x.qcow2\nzz" + a256[2:] + "  y.qcow2\n", name: "x.qcow2", wantErr: "line 2", wantLine: 2},
		"odd length":        {data: a256[:50] + "  x.qcow2\n", name: "x.qcow2", wantErr: "50 hex digits", wantLine: 1},
		"bsd wrong length":  {data: "SHA512 (x.qcow2) = " + a256 + "\n", name: "x.qcow2", wantErr: "a SHA512 digest has 128 hex digits", wantLine: 1},
		"three words":       {data: a256 + "\n" + b256 + "  x.qcow2\n", name: "x.qcow2", wantErr: "only allowed as the sole entry", wantLine: 1},
		"armour not closed": {data: "-----BEGIN PGP SIGNATURE-----\n" + a256 + "  x.qcow2\n", name: "x.qcow2", wantErr: "not closed"},
		"conflict":          {data: a256 + "  x.qcow2\n" + b256 + "  x.qcow2\n", name: "x.qcow2", wantErr: "different sha256 digests (lines 1 and 2)"},
		"only unsupported":  {data: "SHA384 (x.qcow2) = " + strings.Repeat("f", 96) + "\n", name: "x.qcow2", wantErr: "only with unsupported algorithms (SHA384)"},
	}
	const file = "https://example.org/SUMS"
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			entries, err := parseSums(file, []byte(tc.data))
			var got Checksum
			if err == nil {
				got, err = matchSums(file, tc.name, tc.relPath, entries)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				var serr *SyntaxError
				if tc.wantLine != 0 && (!errors.As(err, &serr) || serr.Line != tc.wantLine) {
					t.Errorf("error %v, want a SyntaxError on line %d", err, tc.wantLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// FuzzParseSums checks the parser never panics and that whatever it accepts has well-formed digests.
func FuzzParseSums(f *testing.F) {
	f.Add(strings.Repeat("a", 64) + "  x.qcow2\n")
	f.Add("SHA256 (x.qcow2) = " + strings.Repeat("a", 64) + "\n")
	f.Add("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n- x\n-----BEGIN PGP SIGNATURE-----\n-----END PGP SIGNATURE-----\n")
	f.Add(`\` + strings.Repeat("b", 32) + ` *a\nb`)
	f.Fuzz(func(t *testing.T, data string) {
		entries, err := parseSums("fuzz", []byte(data))
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.alg != "" && len(e.hex) != e.alg.hexLen() {
				t.Fatalf("line %d: %s digest of %d hex digits", e.line, e.alg, len(e.hex))
			}
		}
		if len(entries) > 0 {
			_, _ = matchSums("fuzz", "x.qcow2", "", entries)
		}
	})
}

package fetch

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// clearsign wraps body as a PGP clear-signed message; the signature is made up, as imgform does not check
// it.
func clearsign(body string) string {
	return "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + body +
		"-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n"
}

// TestParseSignedSums reads PGP clear-signed sums files (Fedora's CHECKSUM): only the signed body counts,
// dash-escaped as RFC 4880 says; text outside it, which a signature check would not cover, is refused; a
// detached signature given as the sums file is refused with a hint.
func TestParseSignedSums(t *testing.T) {
	a256, b256 := strings.Repeat("a", 64), strings.Repeat("b", 64)
	cases := map[string]struct {
		data       string
		want       Checksum
		wantSigned bool
		wantErr    []string
		wantLine   int  // for a *SyntaxError
		wantDetach bool // for a *SignatureFileError
	}{
		"plain":           {data: a256 + "  x.qcow2\n", want: Checksum{SHA256, a256}},
		"clear-signed":    {data: clearsign("# x.qcow2: 123 bytes\nSHA256 (x.qcow2) = " + a256 + "\n"), want: Checksum{SHA256, a256}, wantSigned: true},
		"dash-escaped":    {data: clearsign("- " + a256 + "  x.qcow2\n"), want: Checksum{SHA256, a256}, wantSigned: true},
		"blank lines out": {data: "\n\n" + clearsign(a256+"  x.qcow2\n") + "\n\n", want: Checksum{SHA256, a256}, wantSigned: true},
		"CRLF":            {data: strings.ReplaceAll(clearsign(a256+"  x.qcow2\n"), "\n", "\r\n"), want: Checksum{SHA256, a256}, wantSigned: true},
		"line after the signature": {
			data:    clearsign(a256+"  x.qcow2\n") + b256 + "  x.qcow2\n",
			wantErr: []string{"after the PGP signature", "not covered"}, wantLine: 10,
		},
		"line before the signed message": {
			data:    b256 + "  x.qcow2\n" + clearsign(a256+"  x.qcow2\n"),
			wantErr: []string{"PGP armour", "line 2"}, wantLine: 2,
		},
		"second signed message": {
			data:    clearsign(a256+"  x.qcow2\n") + clearsign(b256+"  x.qcow2\n"),
			wantErr: []string{"after the PGP signature"}, wantLine: 10,
		},
		"signature block inside a plain file": {
			data:    a256 + "  x.qcow2\n-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n",
			wantErr: []string{"PGP armour"}, wantLine: 2,
		},
		"unescaped dash line in the signed body": {
			data:    clearsign("-----END PGP SIGNED MESSAGE-----\n" + a256 + "  x.qcow2\n"),
			wantErr: []string{"dash-escaped"}, wantLine: 4,
		},
		"signature not closed": {
			data:    "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + a256 + "  x.qcow2\n-----BEGIN PGP SIGNATURE-----\nxyz\n",
			wantErr: []string{"not closed"},
		},
		"no signature": {
			data:    "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" + a256 + "  x.qcow2\n",
			wantErr: []string{"not closed"},
		},
		"detached armoured signature, like Debian's SHA512SUMS.sign": {
			data:    "-----BEGIN PGP SIGNATURE-----\n\niQIzBAABCgAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n",
			wantErr: []string{"detached PGP signature", "gpg --verify", "not check"}, wantDetach: true,
		},
		"detached binary signature, like Ubuntu's SHA256SUMS.gpg": {
			data:    "\x89\x02\x33\x04\x00\x01\x08\x00\x1d\x16\x21\x04",
			wantErr: []string{"detached PGP signature"}, wantDetach: true,
		},
	}
	const file = "https://example.org/CHECKSUM"
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			entries, signed, err := parseSignedSums(file, []byte(tc.data))
			var got Checksum
			if err == nil {
				got, err = matchSums(file, "x.qcow2", "", entries)
			}
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("parsed, want an error")
				}
				t.Logf("error: %v", err)
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				var serr *SyntaxError
				if tc.wantLine != 0 && (!errors.As(err, &serr) || serr.Line != tc.wantLine) {
					t.Errorf("error %v, want a SyntaxError on line %d", err, tc.wantLine)
				}
				var derr *SignatureFileError
				if tc.wantDetach != errors.As(err, &derr) {
					t.Errorf("error %v: is a *SignatureFileError %v, want %v", err, !tc.wantDetach, tc.wantDetach)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || signed != tc.wantSigned {
				t.Errorf("got %s signed %v, want %s %v", got, signed, tc.want, tc.wantSigned)
			}
		})
	}
}

// TestResolveChecksumSignedWarns resolves through a clear-signed sums file served over loopback HTTP: the
// checksum is used, and Request.Warn says, once, that its signature was not checked; a plain sums file
// gives no warning.
func TestResolveChecksumSignedWarns(t *testing.T) {
	h256 := sha256Hex(testImage)
	srv := newServer(t, map[string][]byte{
		imagePath:          testImage,
		"/images/CHECKSUM": []byte(clearsign("SHA256 (" + imageName + ") = " + h256 + "\n")),
		"/images/SUMS":     []byte(h256 + "  " + imageName + "\n"),
	})
	for name, tc := range map[string]struct {
		sums string
		warn bool
	}{"clear-signed": {"/images/CHECKSUM", true}, "plain": {"/images/SUMS", false}} {
		t.Run(name, func(t *testing.T) {
			var warnings []string
			sum, err := (&Fetcher{}).ResolveChecksum(context.Background(), Request{
				URL: srv.URL + imagePath, Checksum: "file:" + srv.URL + tc.sums,
				Warn: func(text string) { warnings = append(warnings, text) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if sum != (Checksum{SHA256, h256}) {
				t.Errorf("got %s", sum)
			}
			if !tc.warn {
				if len(warnings) != 0 {
					t.Errorf("warnings %q, want none", warnings)
				}
				return
			}
			if len(warnings) != 1 {
				t.Fatalf("warnings %q, want one", warnings)
			}
			t.Logf("warning: %s", warnings[0])
			for _, want := range []string{srv.URL + tc.sums, "PGP", "not checked", "sha256:" + h256} {
				if !strings.Contains(warnings[0], want) {
					t.Errorf("warning %q does not contain %q", warnings[0], want)
				}
			}
		})
	}
}

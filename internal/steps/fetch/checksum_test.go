package fetch

import (
	"strings"
	"testing"
)

// TestParseChecksum covers the accepted spellings and the refusals.
func TestParseChecksum(t *testing.T) {
	h := strings.Repeat("ab", 32)
	cases := map[string]struct {
		in      string
		want    Checksum
		wantErr string
	}{
		"typed":          {in: "sha256:" + h, want: Checksum{SHA256, h}},
		"upper case":     {in: "SHA256:" + strings.ToUpper(h), want: Checksum{SHA256, h}},
		"spaces":         {in: "  sha256:" + h + "\n", want: Checksum{SHA256, h}},
		"bare":           {in: h, want: Checksum{SHA256, h}},
		"md5":            {in: "md5:" + h[:32], want: Checksum{MD5, h[:32]}},
		"sha1":           {in: "sha1:" + h[:40], want: Checksum{SHA1, h[:40]}},
		"file":           {in: "file:SHA256SUMS", wantErr: "names a sums file"},
		"empty":          {in: "", wantErr: "empty"},
		"unknown":        {in: "crc32:abcd1234", wantErr: "unsupported type"},
		"bare odd":       {in: h[:10], wantErr: "match no supported type"},
		"typed too long": {in: "md5:" + h, wantErr: "a md5 value has 32 hex digits"},
		"empty value":    {in: "sha256:", wantErr: "not hex"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseChecksum(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
			if back, err := ParseChecksum(got.String()); err != nil || back != got {
				t.Errorf("String() %q does not read back: %v, %v", got.String(), back, err)
			}
		})
	}
}

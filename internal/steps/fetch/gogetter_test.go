package fetch

import (
	"context"
	"encoding/hex"
	"strings"
	"testing"

	getter "github.com/hashicorp/go-getter/v2"
)

// TestGoGetterSumsFiles pins what go-getter's own sums-file support (Client.GetChecksum, used for
// "?checksum=file:...") does, which is why this package parses sums files itself but leaves verifying a
// concrete checksum to go-getter. If an upgrade changes these answers, revisit sums.go.
func TestGoGetterSumsFiles(t *testing.T) {
	h256, h512 := sha256Hex(testImage), sha512Hex(testImage)
	cases := map[string]struct {
		sums     string
		wantType string // "" when go-getter finds nothing
		wantHex  string
	}{
		// What works: GNU lines with the type guessed from the length, sha512 included, and BSD lines.
		"gnu sha512 guessed from length": {sums: h512 + "  " + imageName + "\n", wantType: "sha512", wantHex: h512},
		"gnu binary marker":              {sums: h256 + " *" + imageName + "\n", wantType: "sha256", wantHex: h256},
		"bsd":                            {sums: "SHA256 (" + imageName + ") = " + h256 + "\n", wantType: "sha256", wantHex: h256},
		// What does not: a malformed line is skipped without a word...
		"malformed line skipped": {sums: "<html>\n" + h256 + "  " + imageName + "\n", wantType: "sha256", wantHex: h256},
		// ...an HTML page gives "no checksum found", naming neither a line nor the files listed...
		"html page": {sums: "<!DOCTYPE html>\n<html><body>gone</body></html>\n"},
		// ...and a line of three words is taken for any file: here the wrong digest wins.
		"three words match anything": {sums: h512 + "  other image.qcow2\n" + h256 + "  " + imageName + "\n", wantType: "sha512", wantHex: h512},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, map[string][]byte{"/SUMS": []byte(tc.sums)})
			client := &getter.Client{Getters: []getter.Getter{newHTTPGetter()}, Decompressors: noDecompressors}
			got, err := client.GetChecksum(context.Background(), &getter.Request{
				Src: srv.URL + imagePath + "?checksum=file:" + srv.URL + "/SUMS",
			})
			if tc.wantType == "" {
				if err == nil || !strings.Contains(err.Error(), "no checksum found") {
					t.Fatalf("got %+v, %v; want go-getter's bare \"no checksum found\"", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tc.wantType || hex.EncodeToString(got.Value) != tc.wantHex {
				t.Errorf("go-getter picked %s:%x, want %s:%s", got.Type, got.Value, tc.wantType, tc.wantHex)
			}
		})
	}
}

package fetch

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/step"
)

var disk = []byte("a pretend disk image, never downloaded while keying")

func hexSum(sum []byte) string { return hex.EncodeToString(sum) }

// keyImages keys the fetch step of each image with one KeyContext, as one plan does, and returns the
// warnings it gave.
func keyImages(t *testing.T, dir string, images ...*config.Image) []string {
	t.Helper()
	var warnings []string
	kc := &step.KeyContext{
		Config: &config.Config{Dir: dir, Images: images},
		Files:  step.OpenFileHasher(t.TempDir()),
		Shared: &step.Shared{},
		Warn:   func(text string) { warnings = append(warnings, text) },
	}
	for _, img := range images {
		// Twice, as a plan that asks again must not warn again.
		for range 2 {
			s := &step.Step{Addr: step.Address{Image: img.Name, Kind: "fetch"}, Kind: Kind{}, Image: img}
			if err := (Kind{}).Key(context.Background(), kc, s, step.NewKeyBuilder(kc, s)); err != nil {
				t.Fatalf("key of image %s: %v", img.Name, err)
			}
		}
	}
	return warnings
}

// TestKeyWarnsWeakChecksum keys sources whose checksum is md5 or sha1, written out or picked from a sums
// file served over loopback HTTP: they are accepted (old mirrors publish nothing else) with one warning per
// image at plan time, naming the image and saying what to use; sha256 and sha512 give none. A clear-signed
// sums file is accepted with one warning that its signature was not checked.
func TestKeyWarnsWeakChecksum(t *testing.T) {
	m, s1, s256 := md5.Sum(disk), sha1.Sum(disk), sha256.Sum256(disk)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/MD5SUMS":
			fmt.Fprintf(w, "%s  disk.qcow2\n", hexSum(m[:]))
		case "/CHECKSUM": // clear-signed, as Fedora's; the signature is made up
			fmt.Fprintf(w, "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSHA256 (disk.qcow2) = %s\n"+
				"-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n", hexSum(s256[:]))
		case "/SUMS":
			fmt.Fprintf(w, "MD5 (disk.qcow2) = %s\nSHA256 (disk.qcow2) = %s\n", hexSum(m[:]), hexSum(s256[:]))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cases := map[string]struct {
		checksum string
		want     []string // substrings of the one warning; none wanted when empty
	}{
		"md5 written out":   {checksum: "md5:" + hexSum(m[:]), want: []string{`image "web"`, "md5", "hostile mirror", "sha256"}},
		"sha1 written out":  {checksum: "sha1:" + hexSum(s1[:]), want: []string{`image "web"`, "sha1", "hostile mirror"}},
		"bare md5 value":    {checksum: hexSum(m[:]), want: []string{"md5"}},
		"md5 from sums":     {checksum: "file:" + srv.URL + "/MD5SUMS", want: []string{"md5", srv.URL + "/MD5SUMS"}},
		"sha256 from sums":  {checksum: "file:" + srv.URL + "/SUMS"}, // listed under md5 too: the strongest wins
		"sha256 written":    {checksum: "sha256:" + hexSum(s256[:])},
		"clear-signed sums": {checksum: "file:" + srv.URL + "/CHECKSUM", want: []string{`image "web"`, srv.URL + "/CHECKSUM", "PGP", "not checked", "sha256:" + hexSum(s256[:])}},
		"none":              {checksum: "none"},
		"no checksum given": {},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			img := &config.Image{Name: "web", Source: config.Source{URL: srv.URL + "/disk.qcow2", Checksum: tc.checksum}}
			warnings := keyImages(t, t.TempDir(), img)
			if len(tc.want) == 0 {
				if len(warnings) != 0 {
					t.Fatalf("warnings %q, want none", warnings)
				}
				return
			}
			if len(warnings) != 1 {
				t.Fatalf("warnings %q, want exactly one", warnings)
			}
			t.Logf("warning: %s", warnings[0])
			for _, want := range tc.want {
				if !strings.Contains(warnings[0], want) {
					t.Errorf("warning %q does not contain %q", warnings[0], want)
				}
			}
		})
	}
}

// TestKeyWarnsWeakChecksumPerImage warns once for each image with a weak checksum, also for a local file.
func TestKeyWarnsWeakChecksumPerImage(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "disk.qcow2"), disk, 0o644); err != nil {
		t.Fatal(err)
	}
	m, s256 := md5.Sum(disk), sha256.Sum256(disk)
	warnings := keyImages(t, dir,
		&config.Image{Name: "a", Source: config.Source{Path: "disk.qcow2", Checksum: "md5:" + hexSum(m[:])}},
		&config.Image{Name: "b", Source: config.Source{Path: "disk.qcow2", Checksum: "sha256:" + hexSum(s256[:])}},
		&config.Image{Name: "c", Source: config.Source{Path: "disk.qcow2", Checksum: "md5:" + hexSum(m[:])}},
	)
	if len(warnings) != 2 || !strings.Contains(warnings[0], `image "a"`) || !strings.Contains(warnings[1], `image "c"`) {
		t.Fatalf("warnings %q, want one for image a and one for image c", warnings)
	}
}

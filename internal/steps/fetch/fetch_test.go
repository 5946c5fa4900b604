package fetch

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

const imagePath = "/images/" + imageName

// TestFetchVerifies downloads the image over loopback HTTP with every checksum form and checks what lands
// at the destination.
func TestFetchVerifies(t *testing.T) {
	h256, h512 := sha256Hex(testImage), sha512Hex(testImage)
	other := strings.Repeat("ab", 32)
	cases := map[string]struct {
		sums     string // served as /images/SUMS when not empty
		checksum string // "{sums}" stands for the URL of SUMS
		want     Checksum
	}{
		"gnu sha256": {
			sums:     h256 + "  " + imageName + "\n",
			checksum: "file:{sums}",
			want:     Checksum{SHA256, h256},
		},
		"gnu sha512 like Debian's SHA512SUMS": {
			sums: strings.Repeat("1", 128) + "  debian-12-genericcloud-amd64.json\n" +
				h512 + "  " + imageName + "\n" +
				strings.Repeat("2", 128) + "  debian-12-genericcloud-amd64.raw\n",
			checksum: "file:{sums}",
			want:     Checksum{SHA512, h512},
		},
		"gnu binary marker": {
			sums:     h256 + " *" + imageName + "\n",
			checksum: "file:{sums}",
			want:     Checksum{SHA256, h256},
		},
		"bsd": {
			sums:     "SHA256 (other.img) = " + other + "\nSHA256 (" + imageName + ") = " + h256 + "\n",
			checksum: "file:{sums}",
			want:     Checksum{SHA256, h256},
		},
		"several entries in mixed styles, strongest algorithm wins": {
			sums: other + "  a.qcow2\n" +
				"SHA256 (" + imageName + ") = " + h256 + "\n" +
				"SHA512 (" + imageName + ") = " + h512 + "\n" +
				other + " *b.raw\n",
			checksum: "file:{sums}",
			want:     Checksum{SHA512, h512},
		},
		"pgp signed like Fedora's CHECKSUM": {
			sums: "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n" +
				"# " + imageName + ": 262144 bytes\n" +
				"SHA256 (" + imageName + ") = " + h256 + "\n" +
				"-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n",
			checksum: "file:{sums}",
			want:     Checksum{SHA256, h256},
		},
		"CRLF line ends": {
			sums:     h256 + "  " + imageName + "\r\n",
			checksum: "file:{sums}",
			want:     Checksum{SHA256, h256},
		},
		"direct sha256": {
			checksum: "sha256:" + h256,
			want:     Checksum{SHA256, h256},
		},
		"direct sha512 in upper case": {
			checksum: "SHA512:" + strings.ToUpper(h512),
			want:     Checksum{SHA512, h512},
		},
		"none declared reports sha256": {
			want: Checksum{SHA256, h256},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			files := map[string][]byte{imagePath: testImage}
			if tc.sums != "" {
				files["/images/SUMS"] = []byte(tc.sums)
			}
			srv := newServer(t, files)
			destDir := t.TempDir()
			dest := filepath.Join(destDir, "source.qcow2")
			res, err := (&Fetcher{}).Fetch(context.Background(), Request{
				URL:      srv.URL + imagePath,
				Checksum: strings.ReplaceAll(tc.checksum, "{sums}", srv.URL+"/images/SUMS"),
				Dest:     dest,
			})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if res.Checksum != tc.want {
				t.Errorf("checksum = %s, want %s", res.Checksum, tc.want)
			}
			if res.Size != int64(len(testImage)) || !res.Downloaded {
				t.Errorf("size %d downloaded %v, want %d true", res.Size, res.Downloaded, len(testImage))
			}
			if res.Path != dest {
				t.Errorf("path = %s, want %s", res.Path, dest)
			}
			assertContent(t, res.Path, testImage)
			if n := srv.hitCount(imagePath); n != 1 {
				t.Errorf("image requested %d times, want 1", n)
			}
			if left := filesUnder(t, destDir); len(left) != 1 { // no temp file left behind
				t.Errorf("destination folder holds %v, want only the image", left)
			}
		})
	}
}

// TestFetchFails checks the failures: each names what went wrong, and none leaves anything at the
// destination.
func TestFetchFails(t *testing.T) {
	h256 := sha256Hex(testImage)
	wrong := sha256Hex([]byte("another image"))
	cases := map[string]struct {
		url      string // path on the server
		sums     string
		checksum string
		noDest   bool
		wantErr  []string // substrings; "{url}" is the server URL
		wantAs   any      // a pointer to the typed error expected, if any
	}{
		"entry missing": {
			url:      imagePath,
			sums:     h256 + "  a.qcow2\n" + h256 + "  b.raw\n",
			checksum: "file:{url}/images/SHA512SUMS",
			wantErr: []string{"no entry for " + imageName + " in SHA512SUMS ({url}/images/SHA512SUMS)",
				"the file lists a.qcow2, b.raw"},
			wantAs: new(*NoEntryError),
		},
		"malformed sums file": {
			url:      imagePath,
			sums:     h256 + "  a.qcow2\n<html><body>Not here</body></html>\n",
			checksum: "file:{url}/images/SHA512SUMS",
			wantErr:  []string{"line 2", "<html>", "{url}/images/SHA512SUMS"},
			wantAs:   new(*SyntaxError),
		},
		"sums file 404": {
			url:      imagePath,
			checksum: "file:{url}/images/MISSING",
			wantErr:  []string{"{url}/images/MISSING", "404"},
		},
		"mismatch": {
			url:      imagePath,
			checksum: "sha256:" + wrong,
			wantErr:  []string{"expected sha256:" + wrong, "got sha256:" + h256, "{url}" + imagePath},
			wantAs:   new(*MismatchError),
		},
		"mismatch sha512": {
			url:      imagePath,
			checksum: "sha512:" + strings.Repeat("0", 128),
			wantErr:  []string{"expected sha512:" + strings.Repeat("0", 128), "got sha512:" + sha512Hex(testImage), "{url}" + imagePath},
			wantAs:   new(*MismatchError),
		},
		"mismatch through sums file": {
			url:      imagePath,
			sums:     wrong + "  " + imageName + "\n",
			checksum: "file:{url}/images/SHA512SUMS",
			wantErr:  []string{"expected sha256:" + wrong, "got sha256:" + h256},
			wantAs:   new(*MismatchError),
		},
		"404": {
			url:      "/images/missing.qcow2",
			checksum: "sha256:" + h256,
			wantErr:  []string{"{url}/images/missing.qcow2", "404"},
		},
		"404 without checksum": {
			url:     "/images/missing.qcow2",
			wantErr: []string{"{url}/images/missing.qcow2", "404"},
		},
		"interrupted": {
			url:      "/cut" + imagePath,
			checksum: "sha256:" + h256,
			wantErr:  []string{"{url}/cut" + imagePath, "unexpected EOF"},
		},
		"interrupted without checksum": {
			url:     "/cut" + imagePath,
			wantErr: []string{"{url}/cut" + imagePath, "unexpected EOF"},
		},
		"no destination": {
			url:      imagePath,
			checksum: "sha256:" + h256,
			noDest:   true,
			wantErr:  []string{"{url}" + imagePath, "needs a destination"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			files := map[string][]byte{imagePath: testImage}
			if tc.sums != "" {
				files["/images/SHA512SUMS"] = []byte(tc.sums)
			}
			srv := newServer(t, files)
			destDir := t.TempDir()
			req := Request{
				URL:      srv.URL + tc.url,
				Checksum: strings.ReplaceAll(tc.checksum, "{url}", srv.URL),
				Dest:     filepath.Join(destDir, "source.qcow2"),
			}
			if tc.noDest {
				req.Dest = ""
			}
			_, err := (&Fetcher{}).Fetch(context.Background(), req)
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			t.Logf("error: %v", err)
			for _, want := range tc.wantErr {
				if want = strings.ReplaceAll(want, "{url}", srv.URL); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if tc.wantAs != nil && !errors.As(err, tc.wantAs) {
				t.Errorf("error %v is not a %T", err, tc.wantAs)
			}
			assertNoFiles(t, destDir)
		})
	}
}

// TestFetchCancel cancels the context once half the image has arrived, while the server holds the rest
// back: the download must stop and leave nothing behind.
func TestFetchCancel(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	destDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := (&Fetcher{}).Fetch(ctx, Request{
		URL:      srv.URL + "/stall" + imagePath,
		Checksum: "sha256:" + sha256Hex(testImage),
		Dest:     filepath.Join(destDir, "source.qcow2"),
		Progress: func(done, total int64) {
			if done >= int64(len(testImage)/2) {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	assertNoFiles(t, destDir)
}

// TestFetchProgress checks the callback sees every byte, in order, against the announced total.
func TestFetchProgress(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	var calls []int64
	var totals []int64
	_, err := (&Fetcher{}).Fetch(context.Background(), Request{
		URL:      srv.URL + imagePath,
		Checksum: "sha256:" + sha256Hex(testImage),
		Dest:     filepath.Join(t.TempDir(), "source.qcow2"),
		Progress: func(done, total int64) {
			calls = append(calls, done)
			totals = append(totals, total)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) < 3 {
		t.Fatalf("progress called %d times, want a call per read", len(calls))
	}
	for i := range calls {
		if totals[i] != int64(len(testImage)) {
			t.Fatalf("call %d: total %d, want %d", i, totals[i], len(testImage))
		}
		if i > 0 && calls[i] < calls[i-1] {
			t.Fatalf("progress went back from %d to %d", calls[i-1], calls[i])
		}
	}
	if calls[0] != 0 || calls[len(calls)-1] != int64(len(testImage)) {
		t.Errorf("progress from %d to %d, want 0 to %d", calls[0], calls[len(calls)-1], len(testImage))
	}
}

// TestResolveChecksum resolves sums files without downloading the image, and reads concrete checksums.
func TestResolveChecksum(t *testing.T) {
	h256, h512 := sha256Hex(testImage), sha512Hex(testImage)
	srv := newServer(t, map[string][]byte{
		imagePath:            testImage,
		"/images/SHA512SUMS": []byte(h512 + "  " + imageName + "\n"),
		"/SHA256SUMS":        []byte(h256 + "  ./images/" + imageName + "\n" + h256 + "  other/" + imageName + "\n"),
		"/huge":              make([]byte, maxSumsSize+10),
	})
	cases := map[string]struct {
		checksum string
		want     Checksum
		wantErr  string
	}{
		"none":                         {checksum: "", want: Checksum{}},
		"direct":                       {checksum: "sha256:" + h256, want: Checksum{SHA256, h256}},
		"bare hex guessed from length": {checksum: h512, want: Checksum{SHA512, h512}},
		"sums file":                    {checksum: "file:" + srv.URL + "/images/SHA512SUMS", want: Checksum{SHA512, h512}},
		"sums file listing paths":      {checksum: "file:" + srv.URL + "/SHA256SUMS", want: Checksum{SHA256, h256}},
		"unknown type":                 {checksum: "sha384:" + h256, wantErr: `unsupported type "sha384"`},
		"wrong length":                 {checksum: "sha512:" + h256, wantErr: "a sha512 value has 128 hex digits, this one has 64"},
		"not hex":                      {checksum: "sha256:xyz", wantErr: "not hex"},
		"sums file too large":          {checksum: "file:" + srv.URL + "/huge", wantErr: "larger than 64 MiB"},
	}
	f := &Fetcher{}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := f.ResolveChecksum(context.Background(), Request{URL: srv.URL + imagePath, Checksum: tc.checksum})
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
		})
	}
	if n := srv.hitCount(imagePath); n != 0 {
		t.Errorf("image requested %d times while resolving checksums, want 0", n)
	}
}

// ExampleFetcher_Fetch shows the call the engine makes for the Debian image of the design.
func ExampleFetcher_Fetch() {
	req := Request{
		URL:      "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
		Checksum: "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS",
		Dest:     "/var/lib/imgform/build/source.qcow2",
		Progress: func(done, total int64) { /* draw a bar */ },
	}
	_ = func(ctx context.Context) error {
		res, err := (&Fetcher{}).Fetch(ctx, req)
		if err != nil {
			return err
		}
		fmt.Println(res.Path, res.Checksum, res.Size)
		return nil
	}
}

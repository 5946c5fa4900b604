package fetch

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// TestParseSource sorts sources into remote and local, and refuses those that need a getter imgform does
// not include with an error naming the supported ones.
func TestParseSource(t *testing.T) {
	base := t.TempDir()
	const supported = "it fetches http:// and https:// URLs, local paths and file: URLs"
	cases := map[string]struct {
		raw       string
		wantLocal string   // the local path, for a local source
		wantURL   string   // the display, for a remote source
		wantName  string   // the file name
		wantErr   []string // substrings of the error
		notInErr  []string // secrets the error must not show
	}{
		"https":                 {raw: "https://example.com/images/a.qcow2", wantURL: "https://example.com/images/a.qcow2", wantName: "a.qcow2"},
		"forced http getter":    {raw: "http::https://example.com/a.qcow2", wantURL: "https://example.com/a.qcow2", wantName: "a.qcow2"},
		"upper-case scheme":     {raw: "HTTPS://example.com/a.qcow2", wantURL: "https://example.com/a.qcow2", wantName: "a.qcow2"},
		"password redacted":     {raw: "https://me:hunter2@example.com/a.qcow2", wantURL: "https://me:redacted@example.com/a.qcow2", wantName: "a.qcow2"},
		"relative path":         {raw: "images/a.qcow2", wantLocal: filepath.Join(base, "images", "a.qcow2"), wantName: "a.qcow2"},
		"percent in a path":     {raw: "images/a%zz.qcow2", wantLocal: filepath.Join(base, "images", "a%zz.qcow2"), wantName: "a%zz.qcow2"},
		"forced file getter":    {raw: "file::images/a.qcow2", wantLocal: filepath.Join(base, "images", "a.qcow2"), wantName: "a.qcow2"},
		"dot slash github.com":  {raw: "./github.com/org/a.qcow2", wantLocal: filepath.Join(base, "github.com", "org", "a.qcow2"), wantName: "a.qcow2"},
		"file URL on localhost": {raw: "file://localhost/srv/a.qcow2", wantLocal: "/srv/a.qcow2", wantName: "a.qcow2"},

		"s3 getter": {
			raw:      "s3::https://s3.amazonaws.com/bucket/disk.qcow2?aws_access_key_id=AKIAEXAMPLE&aws_access_key_secret=s3cr3t",
			wantErr:  []string{"does not fetch s3 sources", supported, "pre-signed"},
			notInErr: []string{"AKIAEXAMPLE", "s3cr3t"},
		},
		"gcs getter": {raw: "gcs::https://www.googleapis.com/storage/v1/bucket/disk.qcow2", wantErr: []string{"does not fetch gcs sources", supported}},
		"git getter": {raw: "git::https://example.com/repo.git//disk.qcow2?ref=v1", wantErr: []string{"does not fetch git sources", supported}},
		"hg getter":  {raw: "hg::https://example.com/repo//disk.qcow2", wantErr: []string{"does not fetch hg sources", supported}},
		"s3 URL":     {raw: "s3://bucket/disk.qcow2", wantErr: []string{"does not fetch s3 sources", supported}},
		"gs URL":     {raw: "gs://bucket/disk.qcow2", wantErr: []string{"does not fetch gs sources", supported}},
		"ssh URL":    {raw: "ssh://git@example.com/repo.git", wantErr: []string{"does not fetch ssh sources", supported}},
		"github shorthand": {
			raw:     "github.com/org/repo//disk.qcow2",
			wantErr: []string{"does not fetch git sources", supported, "https://github.com/org/repo//disk.qcow2", "./github.com/org/repo//disk.qcow2 for a local path"},
		},
		"git ssh shorthand": {raw: "git@github.com:org/repo.git", wantErr: []string{"does not fetch git (ssh) sources", supported}},
		"s3 shorthand": {
			raw:     "bucket.s3.amazonaws.com/disk.qcow2",
			wantErr: []string{"does not fetch s3 sources", "write https://bucket.s3.amazonaws.com/disk.qcow2 for a file served over https"},
		},
		"gcs shorthand": {raw: "www.googleapis.com/storage/v1/bucket/disk.qcow2", wantErr: []string{"does not fetch gcs sources"}},

		"subdir in an http URL":   {raw: "https://example.com/images//a.qcow2", wantErr: []string{`has "//" in its path`}},
		"folder URL":              {raw: "https://example.com/images/", wantErr: []string{"does not name a file"}},
		"no host":                 {raw: "https:///a.qcow2", wantErr: []string{"names no host"}},
		"checksum parameter":      {raw: "https://example.com/a.qcow2?checksum=sha256:00", wantErr: []string{"checksum query parameter"}},
		"file getter with a URL":  {raw: "file::https://example.com/a.qcow2", wantErr: []string{"a file:: source must be a path or a file: URL"}},
		"http getter with a path": {raw: "http::/srv/a.qcow2", wantErr: []string{"must be an http:// or https:// URL"}},
		"unparsable URL": {
			raw: "https://example.com:port/a.qcow2?token=s3cr3t", wantErr: []string{"cannot be parsed"}, notInErr: []string{"s3cr3t"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := parseSource(tc.raw, base)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("parseSource accepted it: %+v", s)
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				for _, secret := range tc.notInErr {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("error %q shows %q", err, secret)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.local != tc.wantLocal || s.name != tc.wantName || (tc.wantURL != "" && s.display != tc.wantURL) {
				t.Errorf("got local %q name %q display %q, want %q %q %q", s.local, s.name, s.display, tc.wantLocal, tc.wantName, tc.wantURL)
			}
		})
	}
}

// TestFetchRedacts checks that failures never show a password or a signed query: neither in the URL the
// package prints nor in the one net/http puts into its own errors.
func TestFetchRedacts(t *testing.T) {
	srv := newServer(t, map[string][]byte{imagePath: testImage})
	down := httptest.NewServer(nil)
	down.Close() // nothing listens there any more: the client's error carries the URL
	const query = "?X-Amz-Signature=s3cr3t&other=kept"
	withPassword := strings.Replace(srv.URL, "http://", "http://me:hunter2@", 1)
	cases := map[string]struct {
		url, checksum string
		wantErr       []string
	}{
		"404":               {url: withPassword + "/images/missing.qcow2" + query, wantErr: []string{"404", "me:redacted@", "X-Amz-Signature=redacted", "other=kept"}},
		"connection failed": {url: down.URL + imagePath + query, wantErr: []string{"X-Amz-Signature=redacted"}},
		"mismatch": {
			url: srv.URL + imagePath + query, checksum: "sha256:" + strings.Repeat("0", 64),
			wantErr: []string{"checksum mismatch for " + srv.URL + imagePath + "?X-Amz-Signature=redacted"},
		},
		"sums file 404": {url: srv.URL + imagePath, checksum: "file:" + withPassword + "/SUMS" + query, wantErr: []string{"404", "me:redacted@"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := (&Fetcher{}).Fetch(context.Background(), Request{
				URL: tc.url, Checksum: tc.checksum, Dest: filepath.Join(t.TempDir(), "source.qcow2"),
			})
			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			t.Logf("error: %v", err)
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			for _, secret := range []string{"hunter2", "s3cr3t"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows %q", err, secret)
				}
			}
		})
	}
}

// TestResolveChecksumChecksSource refuses an unsupported source at plan time, whatever the checksum.
func TestResolveChecksumChecksSource(t *testing.T) {
	for name, checksum := range map[string]string{"none": "", "direct": "sha256:" + sha256Hex(testImage)} {
		t.Run(name, func(t *testing.T) {
			_, err := (&Fetcher{}).ResolveChecksum(context.Background(), Request{URL: "s3::https://s3.amazonaws.com/bucket/disk.qcow2", Checksum: checksum})
			if err == nil || !strings.Contains(err.Error(), "does not fetch s3 sources") {
				t.Fatalf("error %v, want one refusing the s3 source", err)
			}
		})
	}
}

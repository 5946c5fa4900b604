package fetch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFetchLocal uses local files in place: plain paths, file URLs and paths relative to the base
// directory, with the checksum declared directly, through a local sums file, or not at all.
func TestFetchLocal(t *testing.T) {
	base := t.TempDir()
	imgDir := filepath.Join(base, "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(imgDir, imageName)
	if err := os.WriteFile(img, testImage, 0o644); err != nil {
		t.Fatal(err)
	}
	h256, h512 := sha256Hex(testImage), sha512Hex(testImage)
	if err := os.WriteFile(filepath.Join(imgDir, "SHA512SUMS"), []byte(h512+"  "+imageName+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		url, checksum string
		want          Checksum
		wantErr       []string
	}{
		"absolute path":            {url: img, checksum: "sha256:" + h256, want: Checksum{SHA256, h256}},
		"file URL":                 {url: "file://" + filepath.ToSlash(img), checksum: "sha256:" + h256, want: Checksum{SHA256, h256}},
		"relative path":            {url: "images/" + imageName, checksum: "sha512:" + h512, want: Checksum{SHA512, h512}},
		"relative file URL":        {url: "file:images/" + imageName, checksum: "sha256:" + h256, want: Checksum{SHA256, h256}},
		"relative local sums file": {url: "images/" + imageName, checksum: "file:images/SHA512SUMS", want: Checksum{SHA512, h512}},
		"sums file as file URL": {
			url: "./images/" + imageName, checksum: "file:file://" + filepath.ToSlash(filepath.Join(imgDir, "SHA512SUMS")),
			want: Checksum{SHA512, h512},
		},
		"no checksum":       {url: "images/" + imageName, want: Checksum{SHA256, h256}},
		"mismatch":          {url: img, checksum: "sha256:" + strings.Repeat("0", 64), wantErr: []string{"expected sha256:" + strings.Repeat("0", 64), "got sha256:" + h256, img}},
		"missing file":      {url: "images/nope.qcow2", wantErr: []string{filepath.Join(imgDir, "nope.qcow2"), "no such file"}},
		"folder":            {url: "images", wantErr: []string{"not a regular file"}},
		"file URL host":     {url: "file://example.com/x.qcow2", wantErr: []string{"cannot name another host"}},
		"missing sums file": {url: img, checksum: "file:images/MISSING", wantErr: []string{"MISSING"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			res, err := (&Fetcher{}).Fetch(context.Background(), Request{URL: tc.url, Checksum: tc.checksum, BaseDir: base})
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("Fetch succeeded")
				}
				for _, want := range tc.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			want := Result{Path: img, Checksum: tc.want, Size: int64(len(testImage))}
			if res != want { // used in place: the path is the file's own
				t.Errorf("got %+v, want %+v", res, want)
			}
		})
	}
}

// TestFetchLocalRelativeNeedsBase refuses a relative path without a base directory rather than guessing
// the working directory.
func TestFetchLocalRelativeNeedsBase(t *testing.T) {
	_, err := (&Fetcher{}).Fetch(context.Background(), Request{URL: "images/" + imageName})
	if err == nil || !strings.Contains(err.Error(), "no base directory") {
		t.Fatalf("error %v, want one about the missing base directory", err)
	}
}

// TestFetchLocalDest copies a local file to a destination, verifying it on the way; a mismatch leaves no
// copy.
func TestFetchLocalDest(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, imageName)
	if err := os.WriteFile(img, testImage, 0o644); err != nil {
		t.Fatal(err)
	}
	destDir := t.TempDir()
	dest := filepath.Join(destDir, "copy.qcow2")
	res, err := (&Fetcher{}).Fetch(context.Background(), Request{URL: img, Checksum: "sha256:" + sha256Hex(testImage), Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != dest {
		t.Errorf("path %s, want %s", res.Path, dest)
	}
	assertContent(t, dest, testImage)

	bad := filepath.Join(destDir, "bad.qcow2")
	_, err = (&Fetcher{}).Fetch(context.Background(), Request{URL: img, Checksum: "md5:" + strings.Repeat("0", 32), Dest: bad})
	var mismatch *MismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("error %v, want a MismatchError", err)
	}
	if left := filesUnder(t, destDir); len(left) != 1 {
		t.Errorf("destination folder holds %v, want only the good copy", left)
	}
}

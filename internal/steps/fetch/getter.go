package fetch

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	getter "github.com/hashicorp/go-getter/v2"
)

// This file holds the package's use of go-getter (v2) for downloading. Only its HTTP getter is registered,
// for http and https; local files never reach go-getter (parseSource recognises them, copyVerified copies
// them).
//
// Why no other getter: go-getter v1's package-level getter table referenced its S3 and GCS getters, which
// linked the AWS SDK, Google Cloud, gRPC and OpenTelemetry into imgform (a 70 MB binary) whether we
// registered them or not. v2 moved S3 and GCS into modules of their own, which we do not require. Its git
// and hg getters cost little but clone a repository with an external tool to get a disk image out of it,
// which no image publisher asks for; smb likewise. S3 and GCS objects remain reachable over https
// (public objects, pre-signed URLs), and anything else can be downloaded first and given as a path.

// supportedSources names, for error messages, the sources imgform fetches.
const supportedSources = "http:// and https:// URLs, local paths and file: URLs"

// getFile downloads src into the existing empty file dst. A declared want is verified by go-getter after
// the download (a mismatch is a *MismatchError); b bounds the body and checks the free space of dst's file
// system (a *TooLargeError or a *SpaceError, see space.go); progress, when set, sees the bytes as they
// arrive.
func getFile(ctx context.Context, src source, want Checksum, dst string, b bound, progress func(done, total int64)) error {
	client := &getter.Client{
		Getters:         []getter.Getter{newHTTPGetter()},
		Decompressors:   noDecompressors,
		DisableSymlinks: true,
	}
	b.dir = filepath.Dir(dst)
	req := &getter.Request{
		Src:              src.withChecksum(want),
		Dst:              dst,
		GetMode:          getter.ModeFile,
		ProgressListener: tracker{bound: b, report: progress},
	}
	_, err := client.Get(ctx, req)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	var cerr *getter.ChecksumError
	if errors.As(err, &cerr) {
		// go-getter's message is several lines naming our temp file; ours names the URL.
		return &MismatchError{
			URL:      src.display,
			Expected: Checksum{Type: want.Type, Value: hex.EncodeToString(cerr.Expected)},
			Actual:   Checksum{Type: want.Type, Value: hex.EncodeToString(cerr.Actual)},
		}
	}
	return redactError(err)
}

// noDecompressors turns off go-getter's unpacking by file extension: the image must be exactly the bytes
// the checksum covers, and turning an "img.xz" into an image is a step of its own.
var noDecompressors = map[string]getter.Decompressor{}

// newHTTPGetter returns a fresh getter for one client: go-getter's HttpGetter stores its http.Client on
// first use, so sharing one between concurrent fetches would race. Its MaxBytes stays unset: getFile's
// tracker bounds the body instead (space.go says why).
func newHTTPGetter() *getter.HttpGetter {
	return &getter.HttpGetter{
		Netrc: true, // as go-getter's default getter: credentials from ~/.netrc
		// The HEAD request only serves to resume into an existing partial file. We always download into an
		// empty temp file, so it would be a wasted round trip.
		DoNotCheckHeadFirst: true,
	}
}

// secretParams are query parameters (lower case) whose values are credentials: go-getter v1's list, the
// signatures and tokens of pre-signed S3, GCS and Azure URLs, and common generic names.
var secretParams = []string{
	"aws_access_key_id", "aws_access_key_secret", "aws_access_token", "sshkey",
	"x-amz-credential", "x-amz-signature", "x-amz-security-token", "x-goog-credential", "x-goog-signature",
	"sig", "signature", "token", "access_token", "password", "secret", "key",
}

// redactURL renders u for messages with its password and the values of secretParams replaced by
// "redacted", as go-getter v1's RedactURL did.
func redactURL(u *url.URL) string {
	ru := *u
	if _, has := ru.User.Password(); has {
		ru.User = url.UserPassword(ru.User.Username(), "redacted")
	}
	q := ru.Query()
	modified := false
	for k, values := range q {
		if isSecretParam(k) {
			for i := range values {
				values[i] = "redacted"
			}
			modified = true
		}
	}
	if modified {
		ru.RawQuery = q.Encode()
	}
	return ru.String()
}

func isSecretParam(name string) bool {
	for _, s := range secretParams {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return false
}

// redactError redacts the URL that net/http puts in its errors ("Get \"https://...\": dial tcp ..."):
// net/http hides a password there but not a signed query.
func redactError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		if u, perr := url.Parse(uerr.URL); perr == nil {
			uerr.URL = redactURL(u)
		} else {
			uerr.URL = "(unparsable URL)"
		}
	}
	return err
}

// unsupportedError reports a source that needs a go-getter getter imgform does not include. hint, when
// set, replaces the general advice.
func unsupportedError(raw, kind, hint string) error {
	if hint == "" {
		hint = "download the image another way and give its path, or use an https URL, such as that of a public or pre-signed S3 or GCS object"
	}
	return fmt.Errorf("source %q: imgform does not fetch %s sources; it fetches %s (%s)", redactRaw(raw), kind, supportedSources, hint)
}

package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// ManifestFormatVersion is the version of the manifest layout WriteManifest writes. A reader that
// finds a higher one must not guess.
const ManifestFormatVersion = 1

// Manifest describes one built image and its exported files, written next to them as JSON so that a
// deployment can check what it got and trace it back to its inputs.
//
// It holds no secrets, and must not be given any: callers pass names, paths and digests only, never
// variable values, user-data, keys or credentials. Source.URL is the one field that could carry some
// (a password in the URL, a signed or keyed query); WriteManifest refuses such URLs rather than
// publish them.
type Manifest struct {
	FormatVersion int               `json:"format_version"`
	Image         string            `json:"image"` // the image block's name, e.g. "debian-12-base"
	Outputs       []ManifestOutput  `json:"outputs"`
	Source        ManifestSource    `json:"source"`
	StepKeys      map[string]string `json:"step_keys"`    // step name -> hex key of its cached result
	ToolVersion   string            `json:"tool_version"` // imgform's version
	BuildTime     time.Time         `json:"build_time"`   // written in UTC, RFC 3339, to the second
	// Verification says whether the image's test step vouched for the outputs (a new instance booted and
	// checked); nil is written as "not run".
	Verification *Verification `json:"verification"`
	// TotalDuration is the build's wall time, written as seconds.
	TotalDuration time.Duration `json:"-"`
}

// Verification statuses. Only passed and disabled outputs are listed in SHA256SUMS as plain lines; the
// others are listed as "# unverified:" comments, which sha256sum -c skips, so that a deployment that checks
// the sums does not take them.
const (
	VerificationPassed   = "passed"   // the test step passed for the final layer these outputs came from
	VerificationFailed   = "failed"   // a check failed: see Checks
	VerificationSkipped  = "skipped"  // apply -skip-tests
	VerificationNotRun   = "not run"  // the test did not finish (yet): the apply failed or was stopped first
	VerificationDisabled = "disabled" // the image has no checks (smoke_test { enabled = false } and no test)
)

// Verification is the result of an image's test step.
type Verification struct {
	Status  string          `json:"status"`
	TestKey string          `json:"test_key,omitempty"`
	Checks  []ManifestCheck `json:"checks,omitempty"`
}

// Verified tells whether the outputs may be used: tested and passed, or not meant to be tested.
func (v *Verification) Verified() bool {
	return v != nil && (v.Status == VerificationPassed || v.Status == VerificationDisabled)
}

// ManifestCheck is one check of a test and its result; Detail is its output when it failed or why it was
// skipped (already redacted by the engine).
type ManifestCheck struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"`
	Detail  string  `json:"detail,omitempty"`
	Seconds float64 `json:"seconds"`
}

// ManifestOutput describes one exported file.
type ManifestOutput struct {
	Name        string `json:"name"` // the output block's name
	Path        string `json:"path"` // as configured, usually relative to the config folder
	Format      string `json:"format"`
	Compression string `json:"compression"`
	Level       int    `json:"level,omitempty"`
	Size        int64  `json:"size"`
	VirtualSize int64  `json:"virtual_size"`
	SHA256      string `json:"sha256"`
}

// ManifestSource says where the base image came from: a URL or a path, and its checksum
// ("sha512:<hex>" or the like), or for a derived image the parent image's name in Image.
type ManifestSource struct {
	URL      string `json:"url,omitempty"`
	Path     string `json:"path,omitempty"`
	Image    string `json:"image,omitempty"`
	Checksum string `json:"checksum,omitempty"`
}

// ManifestOutput returns the manifest entry for this export under the output's name and configured path.
func (r Result) ManifestOutput(name, path string) ManifestOutput {
	return ManifestOutput{Name: name, Path: path, Format: r.Format, Compression: r.Compression, Level: r.Level,
		Size: r.Size, VirtualSize: r.VirtualSize, SHA256: r.SHA256}
}

// manifestJSON is the stored layout: Manifest with the duration in seconds, which any JSON reader
// understands, instead of Go's nanosecond count.
type manifestJSON struct {
	manifestAlias
	TotalDurationSeconds float64 `json:"total_duration_seconds"`
}

type manifestAlias Manifest

// MarshalJSON writes the stored layout.
func (m Manifest) MarshalJSON() ([]byte, error) {
	m.BuildTime = m.BuildTime.UTC().Truncate(time.Second)
	return json.Marshal(manifestJSON{manifestAlias: manifestAlias(m), TotalDurationSeconds: m.TotalDuration.Seconds()})
}

// UnmarshalJSON reads the stored layout.
func (m *Manifest) UnmarshalJSON(data []byte) error {
	var j manifestJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*m = Manifest(j.manifestAlias)
	m.TotalDuration = time.Duration(j.TotalDurationSeconds * float64(time.Second)).Round(time.Millisecond)
	return nil
}

// WriteManifest writes m as indented JSON to path, atomically. FormatVersion 0 is taken as
// ManifestFormatVersion.
func WriteManifest(path string, m Manifest) error {
	if m.FormatVersion == 0 {
		m.FormatVersion = ManifestFormatVersion
	}
	if err := checkNoSecrets(m.Source.URL); err != nil {
		return fmt.Errorf("write manifest %s: %w", path, err)
	}
	if m.Outputs == nil {
		m.Outputs = []ManifestOutput{}
	}
	if m.StepKeys == nil {
		m.StepKeys = map[string]string{}
	}
	if m.Verification == nil {
		m.Verification = &Verification{Status: VerificationNotRun}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	// Paths with "<" or "&" stay readable.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("write manifest %s: %w", path, err)
	}
	return fsutil.WriteFileAtomic(filepath.Clean(path), buf.Bytes(), OutputPerm)
}

// ReadManifest reads a manifest written by WriteManifest.
func ReadManifest(path string) (Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("read manifest %s: %w", path, err)
	}
	if m.FormatVersion < 1 || m.FormatVersion > ManifestFormatVersion {
		return Manifest{}, fmt.Errorf("read manifest %s: format_version %d is not supported (this imgform reads up to %d)",
			path, m.FormatVersion, ManifestFormatVersion)
	}
	return m, nil
}

// secretQueryKeys are query parameter names (lower case) that carry credentials in URLs go-getter and
// object stores accept: go-getter's S3 and GCS options, pre-signed S3 and Azure SAS URLs, and generic
// token parameters.
var secretQueryKeys = []string{
	"aws_access_key_id", "aws_access_key_secret", "aws_access_token", "x-amz-credential", "x-amz-signature",
	"x-amz-security-token", "x-goog-credential", "x-goog-signature", "sig", "signature", "token",
	"access_token", "password", "secret", "sshkey", "key",
}

// checkNoSecrets refuses a source URL that carries credentials.
func checkNoSecrets(raw string) error {
	if raw == "" {
		return nil
	}
	// go-getter URLs may start with a forced getter ("s3::https://...").
	if _, rest, ok := strings.Cut(raw, "::"); ok {
		raw = rest
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Do not echo it: an unparsable URL may still hold a secret.
		return errors.New("source URL cannot be parsed; pass it without credentials")
	}
	if u.User != nil {
		return fmt.Errorf("source URL %s carries user information; the manifest must not hold credentials", u.Redacted())
	}
	for k := range u.Query() {
		for _, s := range secretQueryKeys {
			if strings.EqualFold(k, s) {
				return fmt.Errorf("source URL has a %q query parameter, which carries credentials; the manifest must not hold them", k)
			}
		}
	}
	return nil
}

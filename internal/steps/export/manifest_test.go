package export

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestManifestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "debian-12-base.manifest.json")
	res := Result{Path: "/abs/dist/debian-12-base.qcow2.zst", Format: FormatQcow2, Compression: CompressionZstd, Level: 19,
		Size: 184 << 20, SHA256: sumA, VirtualSize: 4 << 30}
	m := Manifest{
		Image:   "debian-12-base",
		Outputs: []ManifestOutput{res.ManifestOutput("qcow2", "dist/debian-12-base-2026.11.qcow2.zst")},
		Source: ManifestSource{
			URL:      "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
			Checksum: "sha512:" + strings.Repeat("ab", 64),
		},
		StepKeys:      map[string]string{"fetch": sumA, "boot": sumB, "export.qcow2": sumC},
		ToolVersion:   "0.1.0",
		BuildTime:     time.Date(2026, 11, 25, 23, 40, 5, 123456789, time.FixedZone("CET", 3600)),
		TotalDuration: 3*time.Minute + 2500*time.Millisecond,
		Verification: &Verification{Status: VerificationFailed, TestKey: sumB, Checks: []ManifestCheck{
			{Name: "boot", Status: "passed", Seconds: 61.5}, {Name: "network", Status: "failed", Detail: "no address"}}},
	}
	if err := WriteManifest(path, m); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	if fields["build_time"] != "2026-11-25T22:40:05Z" || fields["total_duration_seconds"] != 182.5 ||
		fields["format_version"] != float64(ManifestFormatVersion) ||
		fields["verification"].(map[string]any)["status"] != "failed" {
		t.Errorf("stored fields: %s", raw)
	}
	got, err := ReadManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	want := m
	want.FormatVersion = ManifestFormatVersion
	want.BuildTime = m.BuildTime.UTC().Truncate(time.Second)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, want)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != OutputPerm {
		t.Errorf("stat: %v %v", st, err)
	}
}

// A manifest written without a verification says the outputs were not verified, never nothing.
func TestManifestWithoutVerificationSaysNotRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	if err := WriteManifest(path, Manifest{Image: "i"}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Verification == nil || got.Verification.Status != VerificationNotRun || got.Verification.Verified() {
		t.Errorf("verification %+v", got.Verification)
	}
}

func TestManifestRefusesSecrets(t *testing.T) {
	cases := map[string]string{
		"password in the URL": "https://user:hunter2@example.org/disk.qcow2",
		"go-getter s3 keys":   "s3::https://s3.amazonaws.com/bucket/disk.qcow2?aws_access_key_id=AKIA&aws_access_key_secret=x",
		"pre-signed URL":      "https://bucket.s3.amazonaws.com/disk.qcow2?X-Amz-Credential=a&X-Amz-Signature=b",
		"token":               "https://example.org/disk.qcow2?token=abc",
	}
	for name, url := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.json")
			err := WriteManifest(path, Manifest{Image: "x", Source: ManifestSource{URL: url}})
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "AKIA") {
				t.Errorf("the error repeats the secret: %v", err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("manifest written: %v", err)
			}
		})
	}
}

func TestReadManifestVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	if err := os.WriteFile(path, []byte(`{"format_version": 2, "image": "x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadManifest(path); err == nil || !strings.Contains(err.Error(), "format_version 2 is not supported") {
		t.Errorf("got %v", err)
	}
}

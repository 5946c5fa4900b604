package state

import (
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// maxMetaErrLen bounds the message of a metadata error: a damaged meta.json is reported by cache verify and
// in warnings, and must not paste megabytes of the file into them.
const maxMetaErrLen = 1024

// FuzzReadMeta feeds arbitrary bytes to readMeta as an object's meta.json. Each input is tried twice: as
// written, and, when it decodes, with its key and digests made right, so that the fuzzer gets past the
// object digest (which it cannot forge) to the checks behind it.
func FuzzReadMeta(f *testing.F) {
	files := []FileSum{
		{Name: "disk.qcow2", Size: 1 << 30, SHA256: strings.Repeat("ab", 32)},
		{Name: "meta", Size: 0, SHA256: strings.Repeat("0", 64)},
	}
	good := Meta{FormatVersion: metaFormatVersion, Key: testKey("x"),
		Info: Info{Kind: "disk", Image: "base", Step: "provision", Parent: testKey("p"),
			Attrs: map[string]string{"format": "qcow2"}},
		Size: 1 << 30, SHA256: ObjectDigest(files), ParentSHA256: strings.Repeat("cd", 32), Files: files,
		Created: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)}
	b, err := json.MarshalIndent(&good, "", "  ")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"format_version":1,"key":"` + testKey("x").String() + `","kind":"fetch","size":0,"sha256":"` +
		ObjectDigest(nil) + `","files":[]}`))
	f.Add([]byte(`{"format_version":1,"kind":"k","files":[{"name":"a/b","size":1,"sha256":"` + strings.Repeat("g", 64) + `"}]}`))
	f.Add([]byte(`{"format_version":1,"kind":"k","files":[{"name":"a","size":9223372036854775807,"sha256":"` +
		strings.Repeat("a", 64) + `"},{"name":"b","size":9223372036854775807,"sha256":"` + strings.Repeat("a", 64) + `"}]}`))
	f.Add([]byte(`{"format_version":1,"kind":"k","parent":"` + testKey("p").String() + `","parent_sha256":"x"}`))
	f.Add([]byte(`{"format_version":1,"kind":"k","attrs":{"":"v"}}`))
	f.Add([]byte(`{"format_version":1` + strings.Repeat("0", 2000) + `}`))
	f.Add([]byte(`{"format_version":1,"key":"` + strings.Repeat("z", 2000) + `"}`))
	f.Add([]byte(`{"format_version":1,"kind":"k","files":[{"name":"` + strings.Repeat("n", 2000) + `","size":1}]}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})

	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		checkReadMeta(t, dir, testKey("x"), data)
		var m Meta
		if json.Unmarshal(data, &m) != nil {
			return
		}
		m.Key = testKey("x")
		m.SHA256 = ObjectDigest(m.Files)
		m.Size = 0
		for _, f := range m.Files {
			m.Size += f.Size // wraps as a sum of huge sizes would
		}
		fixed, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		checkReadMeta(t, dir, m.Key, fixed)
	})
}

// checkReadMeta writes data as dir's meta.json, reads it back for key and checks what readMeta accepts.
func checkReadMeta(t *testing.T, dir string, key Key, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, metaName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := readMeta(dir, key)
	if err != nil {
		if n := len(err.Error()); n > maxMetaErrLen {
			t.Fatalf("error of %d bytes: %.200s...", n, err)
		}
		return
	}
	if m.FormatVersion != metaFormatVersion || m.Key != key || m.Kind == "" {
		t.Fatalf("accepted format_version %d, key %s, kind %q", m.FormatVersion, m.Key.Short(), m.Kind)
	}
	if err := m.Info.validate(); err != nil {
		t.Fatalf("accepted info the store would not write: %v", err)
	}
	if !isDigest(m.SHA256) || m.SHA256 != ObjectDigest(m.Files) {
		t.Fatalf("accepted object digest %q", m.SHA256)
	}
	if m.Parent.IsZero() != (m.ParentSHA256 == "") || (m.ParentSHA256 != "" && !isDigest(m.ParentSHA256)) {
		t.Fatalf("accepted parent %s with parent_sha256 %q", m.Parent.Short(), m.ParentSHA256)
	}
	var total int64
	for i, f := range m.Files {
		if validFileName(f.Name) != nil || strings.ContainsAny(f.Name, "/\\\x00\n\r") {
			t.Fatalf("accepted file name %q", f.Name)
		}
		if i > 0 && m.Files[i-1].Name >= f.Name {
			t.Fatalf("accepted unsorted files %q, %q", m.Files[i-1].Name, f.Name)
		}
		if !isDigest(f.SHA256) {
			t.Fatalf("file %q: accepted sha256 %q", f.Name, f.SHA256)
		}
		if f.Size < 0 || total > math.MaxInt64-f.Size {
			t.Fatalf("file %q: accepted size %d after %d bytes", f.Name, f.Size, total)
		}
		total += f.Size
		if got, ok := m.File(f.Name); !ok || got != f {
			t.Fatalf("File(%q) = %v, %v", f.Name, got, ok)
		}
	}
	if total != m.Size {
		t.Fatalf("accepted size %d for files of %d bytes", m.Size, total)
	}
}

// isDigest reports whether s is a SHA-256 as the store writes it: 64 lowercase hex digits.
func isDigest(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32 && s == strings.ToLower(s)
}

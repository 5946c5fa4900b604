package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Errors about a key or a metadata file quote a bounded part of what they were given: both come from files
// anyone who can write to the store controls.
func TestKeyAndMetaErrorsAreBounded(t *testing.T) {
	long := strings.Repeat("ab", 1<<20)
	if _, err := ParseKey(long); err == nil || len(err.Error()) > 300 {
		t.Errorf("ParseKey of 2 MiB: %.300v", err)
	}
	if _, err := ParseKey(strings.Repeat("zz", KeySize)); err == nil || len(err.Error()) > 300 {
		t.Errorf("ParseKey of bad hex: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, metaName), []byte(`{"format_version": 1, "pad": "`+strings.Repeat("x", maxMetaSize)+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := readMeta(dir, Key{1})
	if err == nil || !strings.Contains(err.Error(), "more than the") || len(err.Error()) > 300 {
		t.Errorf("readMeta of a metadata file over %d bytes: %v", maxMetaSize, err)
	}
}

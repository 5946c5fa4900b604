package seed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestDeterministicRebuild(t *testing.T) {
	for name, files := range buildCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := readFile(t, buildISO(t, files))
			b := readFile(t, buildISO(t, files))
			if !bytes.Equal(a, b) {
				t.Errorf("two builds differ (%d and %d bytes, first difference at %d)", len(a), len(b), firstDiff(a, b))
			}
		})
	}
}

// TestDeterministicAcrossHosts changes what differs between build machines (time zone, umask) and checks
// the bytes do not move. It changes process-wide settings, so it must not run in parallel.
func TestDeterministicAcrossHosts(t *testing.T) {
	files := buildCases()["all files"]
	want := readFile(t, buildISO(t, files))

	oldLocal := time.Local
	time.Local = time.FixedZone("UTC+5:30", 5*3600+1800)
	oldMask := syscall.Umask(0o077)
	t.Cleanup(func() {
		time.Local = oldLocal
		syscall.Umask(oldMask)
	})
	got := readFile(t, buildISO(t, files))
	if !bytes.Equal(got, want) {
		t.Errorf("build with another time zone and umask differs at byte %d", firstDiff(got, want))
	}
}

// TestGoldenDigest pins the SHA-256 of each case's ISO. A failure means the bytes Build writes changed
// (a go-diskfs upgrade, a layout change): bump FormatVersion, then run go test -update.
func TestGoldenDigest(t *testing.T) {
	for name, files := range buildCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sum := sha256.Sum256(readFile(t, buildISO(t, files)))
			checkGolden(t, "iso-sha256", name, []byte(hex.EncodeToString(sum[:])+"\n"))
		})
	}
}

func TestNormalizeIdempotent(t *testing.T) {
	img := &memImage{b: readFile(t, buildISO(t, buildCases()["all files"]))}
	want := bytes.Clone(img.b)
	if err := normalize(img); err != nil {
		t.Fatalf("normalize: %v", err)
	}
	if !bytes.Equal(img.b, want) {
		t.Errorf("normalizing a normalized image changed byte %d", firstDiff(img.b, want))
	}
}

// FuzzNormalize feeds normalize damaged images: it must return an error or succeed, never panic or
// allocate without bound, and whatever it accepts it must leave alone the second time. The fuzz input is
// only the part normalize reads, from the volume descriptors up to the path tables: the zero system area
// before it and the file data after it would make each input large and minimizing slow.
func FuzzNormalize(f *testing.F) {
	dir := f.TempDir()
	dest := filepath.Join(dir, "seed.iso")
	if err := Build(context.Background(), buildCases()["all files"], dest); err != nil {
		f.Fatal(err)
	}
	valid, err := os.ReadFile(dest)
	if err != nil {
		f.Fatal(err)
	}
	pathTable := int(binary.LittleEndian.Uint32(valid[firstVDSector*blockSize+140:]))
	meta := valid[firstVDSector*blockSize : pathTable*blockSize]
	f.Add(meta)
	f.Add(meta[:blockSize])
	f.Add(make([]byte, 4*blockSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		img := &memImage{b: append(make([]byte, firstVDSector*blockSize), b...)}
		if err := normalize(img); err != nil {
			return
		}
		once := bytes.Clone(img.b)
		if err := normalize(img); err != nil {
			t.Fatalf("second normalize failed: %v", err)
		}
		if !bytes.Equal(img.b, once) {
			t.Fatalf("second normalize changed byte %d", firstDiff(img.b, once))
		}
	})
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// firstDiff returns the index of the first byte where a and b differ, or the shorter length.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

package seed

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// buildISO builds files into a fresh folder and returns the path of the ISO.
func buildISO(t *testing.T, files Files) string {
	t.Helper()
	dest := filepath.Join(t.TempDir(), "seed.iso")
	if err := Build(context.Background(), files, dest); err != nil {
		t.Fatalf("Build: %v", err)
	}
	return dest
}

// wantFiles maps the names Build should write to their content.
func wantFiles(files Files) map[string][]byte {
	m := map[string][]byte{}
	for _, e := range files.entries() {
		m[e.name] = e.data
	}
	return m
}

// readBackDiskfs reads every file at the root of the ISO with go-diskfs, and its label.
func readBackDiskfs(t *testing.T, isoPath string) (label string, got map[string][]byte) {
	t.Helper()
	f, err := os.Open(isoPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Errorf("close %s: %v", isoPath, err)
		}
	})
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	fs, err := iso9660.Read(file.New(f, true), fi.Size(), 0, 0)
	if err != nil {
		t.Fatalf("go-diskfs read: %v", err)
	}
	des, err := fs.ReadDir(".")
	if err != nil {
		t.Fatalf("go-diskfs ReadDir: %v", err)
	}
	got = map[string][]byte{}
	for _, de := range des {
		data, err := fs.ReadFile(de.Name())
		if err != nil {
			t.Fatalf("go-diskfs ReadFile %s: %v", de.Name(), err)
		}
		got[de.Name()] = data
	}
	return strings.TrimRight(fs.Label(), " \x00"), got
}

// pvdLabel returns the volume identifier straight from the primary volume descriptor bytes.
func pvdLabel(t *testing.T, isoPath string) string {
	t.Helper()
	f, err := os.Open(isoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	pvd := make([]byte, blockSize)
	if _, err := f.ReadAt(pvd, 16*blockSize); err != nil {
		t.Fatalf("read PVD: %v", err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		t.Fatalf("sector 16 is not a primary volume descriptor: % x", pvd[:7])
	}
	return strings.TrimRight(string(pvd[40:72]), " \x00")
}

// needTool skips the test, saying why and how to fix it, when a system tool is missing. A skip is reported
// by `go test -v` and in CI logs, unlike a silent pass; go-diskfs read-back stays the always-on check.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found (apt-get install %s); the go-diskfs read-back still ran", name, pkg)
	}
	return p
}

// run runs a command and returns its standard output, failing the test with its standard error.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// memImage is an in-memory image for normalize, so fuzzing needs no files.
type memImage struct{ b []byte }

func (m *memImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memImage) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("write out of range")
	}
	return copy(m.b[off:], p), nil
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const unformatted = `image "base" {
source {
url = "https://example.org/disk.qcow2"
    checksum="none"
}
  output "disk" {
  path="dist/disk.qcow2"
        format = "qcow2"
  }
}


`

const canonical = `image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  output "disk" {
    path   = "dist/disk.qcow2"
    format = "qcow2"
  }
}
`

func TestFmtRewritesToCanonical(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "main.imgform.hcl")
	writeFile(t, path, unformatted)
	writeFile(t, filepath.Join(dir, "notes.txt"), "not touched  =  x\n")

	code, stdout, stderr := imgform(t, "", "fmt", "-check", dir)
	if code != 3 || strings.TrimSpace(stdout) != path || !strings.Contains(stderr, "1 file(s) are not formatted") {
		t.Fatalf("-check on unformatted input: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(path); string(b) != unformatted {
		t.Fatal("-check wrote the file")
	}

	code, stdout, _ = imgform(t, "", "fmt", "-write=false", "-diff", dir)
	if code != 0 || !strings.Contains(stdout, "-    checksum=\"none\"") || !strings.Contains(stdout, "+    checksum = \"none\"") {
		t.Fatalf("-diff: exit %d\n%s", code, stdout)
	}
	if b, _ := os.ReadFile(path); string(b) != unformatted {
		t.Fatal("-write=false wrote the file")
	}

	if code, stdout, stderr := imgform(t, "", "fmt", dir); code != 0 || strings.TrimSpace(stdout) != path {
		t.Fatalf("fmt: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if b, _ := os.ReadFile(path); string(b) != canonical {
		t.Fatalf("formatted file:\n%s\nwant:\n%s", b, canonical)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "notes.txt")); string(b) != "not touched  =  x\n" {
		t.Error("fmt touched a file that is not configuration")
	}

	if code, stdout, _ := imgform(t, "", "fmt", "-check", dir); code != 0 || stdout != "" {
		t.Fatalf("-check on canonical input: exit %d, stdout %q", code, stdout)
	}
}

func TestFmtExampleIsCanonical(t *testing.T) {
	if code, stdout, stderr := imgform(t, "", "fmt", "-check", "-recursive", "../../examples"); code != 0 {
		t.Fatalf("examples are not formatted: exit %d\n%s%s", code, stdout, stderr)
	}
}

func TestFmtRecursive(t *testing.T) {
	dir := t.TempDir()
	nested := filepath.Join(dir, "a", "b", "x.imgvars.hcl")
	writeFile(t, nested, "who=\"me\"\n")
	if code, stdout, _ := imgform(t, "", "fmt", "-check", dir); code != 0 || stdout != "" {
		t.Fatalf("without -recursive a nested file is not looked at: exit %d, %q", code, stdout)
	}
	if code, stdout, _ := imgform(t, "", "fmt", "-check", "-recursive", dir); code != 3 || strings.TrimSpace(stdout) != nested {
		t.Fatalf("-recursive: exit %d, %q", code, stdout)
	}
}

func TestFmtStdin(t *testing.T) {
	code, stdout, _ := imgform(t, unformatted, "fmt", "-")
	if code != 0 || stdout != canonical {
		t.Fatalf("exit %d\n%s", code, stdout)
	}
	if code, _, _ := imgform(t, unformatted, "fmt", "-check", "-"); code != 3 {
		t.Fatalf("-check - on unformatted input: exit %d", code)
	}
}

func TestFmtSyntaxErrorLeavesFileAlone(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "main.imgform.hcl")
	broken := "image \"base\" {\n  source {\n    url = \"x\n}\n"
	writeFile(t, path, broken)
	code, _, stderr := imgform(t, "", "fmt", dir)
	if code != 2 || !strings.Contains(stderr, "Invalid multi-line string") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if b, _ := os.ReadFile(path); string(b) != broken {
		t.Fatal("fmt changed a file with a syntax error")
	}
}

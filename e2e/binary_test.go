package e2e

import (
	"os/exec"
	"path/filepath"
	"testing"

	"gitlab.com/imgform/imgform/internal/steps/qemu/qemutest"
)

// buildImgform builds cmd/imgform into a folder of the test and returns its path, for the tests that run
// the program as a user does (a terminal, kill -9, a CI job).
func buildImgform(t *testing.T) string {
	t.Helper()
	root, err := qemutest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "bin", "imgform")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/imgform")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/imgform: %v\n%s", err, out)
	}
	return bin
}

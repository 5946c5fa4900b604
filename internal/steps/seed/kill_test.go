package seed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// killHelperEnv makes the test binary build a seed and stop, with the user-data staged, until it is
// killed: a stand-in for imgform killed with kill -9 during the seed step, which no cleanup code survives.
const killHelperEnv = "IMGFORM_SEED_KILL_HELPER"

const killSecret = "s3cr3t-kill-drill"

func TestMain(m *testing.M) {
	if dest := os.Getenv(killHelperEnv); dest != "" {
		staged = func(dir string) {
			fmt.Println("staged", dir)
			select {} // wait for the kill
		}
		err := Build(context.Background(), Files{UserData: []byte("#cloud-config\npassword: " + killSecret + "\n"), MetaData: []byte("instance-id: x\n")}, dest)
		fmt.Println("error: Build returned", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestKilledDuringSeedLeavesNothingReadable kills the seed's builder with SIGKILL while the user-data (with
// a password) is staged, then looks at every file under the output's folder and in the temporary folder:
// none that holds the password may be readable by another user (the file readable by others and every
// folder above it searchable by them).
func TestKilledDuringSeedLeavesNothingReadable(t *testing.T) {
	tmp := t.TempDir()
	dest := filepath.Join(tmp, "store", "step", "seed.iso")
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // t.TempDir is 0700 already: make the test able to fail
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+dest, "TMPDIR="+tmp)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "staged ") {
		_ = cmd.Process.Kill()
		t.Fatalf("helper: %q", sc.Text())
	}
	stagedDir := strings.TrimPrefix(sc.Text(), "staged ")
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // "signal: killed", as intended

	found := 0
	err = filepath.WalkDir(tmp, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(b, []byte(killSecret)) {
			return err
		}
		found++
		if readableByOthers(t, tmp, path) {
			t.Errorf("%s holds the password and other users can read it", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The staged user-data is still there after the kill (the next apply sweeps the step's folder): the
	// check above looked at it, so it can fail.
	if found == 0 || !strings.HasPrefix(stagedDir, filepath.Dir(dest)) {
		t.Errorf("found the password in %d files; staged in %s", found, stagedDir)
	}
}

// readableByOthers reports whether a user other than the owner and its group could read path: the file
// readable by others and every folder from root down to it searchable by them.
func readableByOthers(t *testing.T, root, path string) bool {
	t.Helper()
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		need := fs.FileMode(0o004)
		if fi.IsDir() {
			need = 0o001
		}
		if fi.Mode().Perm()&need == 0 {
			return false
		}
		if p == root {
			return true
		}
	}
}

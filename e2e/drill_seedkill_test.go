//go:build drills

package e2e

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// seedKillSecret is the sensitive value the drill looks for on disk after the kill.
const seedKillSecret = "s3cr3t-seed-kill-drill"

// Drill 7 (issue 12.3): imgform, the real binary, is killed with SIGKILL while its seed step has the
// user-data (with a sensitive value) staged, and then no file that holds the value is readable by another
// user, neither in the cache nor in the temporary folder. The seed step takes milliseconds, so the drill
// makes it long with a large write_files entry and kills imgform as soon as the staging folder appears;
// it runs a few rounds and needs at least one kill that found the user-data staged, so it cannot pass by
// killing too early or too late. No QEMU is involved: the kill lands before the boot.
func TestDrill7SeedKill(t *testing.T) {
	bin := drillBinary(t)
	base := t.TempDir()
	dir, cache, tmp := filepath.Join(base, "config"), filepath.Join(base, "cache"), filepath.Join(base, "tmp")
	for _, p := range []string{dir, cache, tmp} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The cache and its objects folder are made searchable by others (as in a store made before imgform
	// created its folders 0700, which keeps their modes), so that only the seed step's own staging decides;
	// t.TempDir is 0700 already.
	if err := os.MkdirAll(filepath.Join(cache, "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{base, cache, filepath.Join(cache, "objects"), tmp} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	disk := make([]byte, 1<<20)
	disk[510], disk[511] = 0x55, 0xAA
	if err := os.WriteFile(filepath.Join(dir, "disk.raw"), disk, 0o644); err != nil {
		t.Fatal(err)
	}
	// 48 MiB of text that goes into the user-data: the ISO takes a while to write.
	if err := os.WriteFile(filepath.Join(dir, "big.txt"), bytes.Repeat([]byte("0123456789abcdef\n"), 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.imgform.hcl"), []byte(`variable "password" {
  type      = string
  sensitive = true
}

image "seedkill" {
  source {
    path = "disk.raw"
  }
  userdata {
    cloud_config = {
      chpasswd    = { expire = false, users = [{ name = "debian", password = var.password, type = "text" }] }
      write_files = [{ path = "/etc/big.txt", content = file("big.txt") }]
    }
  }
  provision "x" {
    inline = ["true"]
  }
  output "o" {
    path = "dist/o.qcow2"
  }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}

	staged := 0
	seen := map[string]bool{}
	for round := 0; round < 5 && staged < 2; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, bin, "apply", "-skip-tests")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "IMGFORM_CACHE_DIR="+cache, "TMPDIR="+tmp, "IMGFORM_ACCELERATOR=tcg", "NO_COLOR=1",
			"IMGFORM_VAR_password="+seedKillSecret)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatal(err)
		}
		stage := waitForStaging(cache, seen, 90*time.Second)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		cancel()
		if stage == "" {
			t.Logf("round %d: no staging folder seen before the kill\n%s", round, lastLines(out.String(), 5))
		} else {
			staged++
			seen[stage] = true
			t.Logf("round %d: killed with the user-data staged in %s (%s)", round, stage, modesFrom(base, stage))
		}
		checkNothingReadable(t, base, []string{cache, tmp})
		noQEMULeftIn(t, cache)
		// The next round starts from a cache whose seed step never finished: the next apply sweeps it.
	}
	if staged == 0 {
		t.Fatal("no kill landed while the user-data was staged: the drill proved nothing")
	}
}

// waitForStaging polls the cache for a seed staging folder with files in it, other than the ones seen in
// earlier rounds (a killed apply leaves its own for the next apply to sweep), and returns its path, or ""
// when none appeared in time.
func waitForStaging(cache string, seen map[string]bool, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var found string
		_ = filepath.WalkDir(cache, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), ".seed-stage-") && !seen[path] {
				if entries, _ := os.ReadDir(path); len(entries) > 0 {
					found = path
					return filepath.SkipAll
				}
			}
			return nil
		})
		if found != "" {
			return found
		}
		time.Sleep(time.Millisecond)
	}
	return ""
}

// checkNothingReadable fails for every file under roots that holds the secret and that another user could
// read (readable by others, and every folder from base down to it searchable by them).
func checkNothingReadable(t *testing.T, base string, roots []string) {
	t.Helper()
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil // a file removed while walking is not readable either
			}
			b, err := os.ReadFile(path)
			if err != nil || !bytes.Contains(b, []byte(seedKillSecret)) {
				return nil
			}
			if readableByOthersFrom(base, path) {
				t.Errorf("%s holds the sensitive value and other users can read it", path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func readableByOthersFrom(base, path string) bool {
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return false
		}
		need := fs.FileMode(0o004)
		if fi.IsDir() {
			need = 0o001
		}
		if fi.Mode().Perm()&need == 0 {
			return false
		}
		if p == base || p == filepath.Dir(p) {
			return true
		}
	}
}

// noQEMULeftIn fails when a QEMU runs on this cache.
func noQEMULeftIn(t *testing.T, cache string) {
	t.Helper()
	for _, p := range qemuProcesses(cache) {
		t.Errorf("a QEMU runs on the drill's cache after the kill: %d %s", p.pid, p.cmdline)
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
}

// modesFrom lists the modes of the folders from base down to path, for the log.
func modesFrom(base, path string) string {
	var modes []string
	for p := path; ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil {
			modes = append([]string{fi.Mode().Perm().String() + " " + filepath.Base(p)}, modes...)
		}
		if p == base || p == filepath.Dir(p) {
			return strings.Join(modes, ", ")
		}
	}
}

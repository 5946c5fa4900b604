package cleanup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/config"
)

func TestScriptFollowsOptions(t *testing.T) {
	all := Options{Cleanup: config.Cleanup{CloudInit: true, MachineID: true, SSHHostKeys: true, Resolved: true,
		Logs: true, AptLists: true, Trim: true, ZeroFreeSpace: true}, BuildUser: "imgform-build",
		Networks: []*config.NetworkUnit{matchUnit("50-default", "en*")}}
	none := Options{BuildUser: "imgform-build"}
	cases := map[string]struct {
		opts      Options
		want, not []string
	}{
		"everything": {opts: all, want: []string{"cloud-init clean --logs --seed", "truncate -s 0 /etc/machine-id",
			"rm -f /etc/ssh/ssh_host_*", "stub-resolv.conf", "journalctl --relinquish-var", "rm -rf /var/lib/apt/lists/*",
			"fstrim", "userdel --force --remove 'imgform-build'", "50-cloud-init", "enable systemd-networkd.service", ".imgform-zero", PowerOff}},
		"only what is always done": {opts: none, want: []string{"userdel --force --remove 'imgform-build'", "sync"},
			not: []string{"cloud-init clean", "machine-id", "ssh_host_", "resolv.conf", "journalctl", "apt", "fstrim", "50-cloud-init", "systemd-networkd", ".imgform-zero"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := Script(tc.opts)
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("script lacks %q:\n%s", w, s)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(s, n) {
					t.Errorf("script has %q:\n%s", n, s)
				}
			}
			if strings.Index(s, "ssh_host_") >= 0 && strings.Index(s, "ssh_host_") < strings.Index(s, "userdel") {
				t.Error("host keys removed before the build user: sshd could refuse the rest of the session")
			}
			if z := strings.Index(s, "/dev/zero"); z >= 0 && (z < strings.Index(s, "ssh_host_") || z < strings.Index(s, "userdel") ||
				z < strings.Index(s, "cloud-init clean") || z > strings.Index(s, "fstrim")) {
				t.Error("the free space is zeroed before a deletion or after the trim")
			}
		})
	}
}

// The script is valid POSIX shell: dash (Debian's /bin/sh) parses it without running it.
func TestScriptParses(t *testing.T) {
	sh, err := exec.LookPath("dash")
	if err != nil {
		sh = "/bin/sh"
	}
	p := filepath.Join(t.TempDir(), "cleanup.sh")
	opts := Options{Cleanup: config.Cleanup{CloudInit: true, MachineID: true, SSHHostKeys: true, Resolved: true,
		Logs: true, AptLists: true, Trim: true, ZeroFreeSpace: true}, BuildUser: "o'brien",
		Networks: []*config.NetworkUnit{matchUnit("50-default", "en* eth*"), matchUnit("60-any")}}
	if err := os.WriteFile(p, []byte(Script(opts)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("%s -n: %v\n%s", sh, err, out)
	}
}

// zeroFill on a real ext4 file system: the bytes of a deleted file are in the file system image before,
// and gone after. Needs root (a loop mount) and mkfs.ext4.
func TestZeroFillRemovesDeletedData(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop mount")
	}
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("needs mkfs.ext4 (e2fsprogs)")
	}
	marker := []byte("imgform-deleted-secret-")
	for _, fill := range []bool{false, true} {
		dir := t.TempDir()
		img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
		run := func(name string, args ...string) {
			t.Helper()
			if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
				t.Fatalf("%s %v: %v\n%s", name, args, err, out)
			}
		}
		run("truncate", "-s", "32M", img)
		// No blocks reserved for root: in a guest root may use them (CAP_SYS_RESOURCE), in a test sandbox
		// it may not, and the fill could not reach them.
		run("mkfs.ext4", "-q", "-F", "-m", "0", img)
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		run("mount", "-o", "loop", img, mnt)
		mounted := true
		t.Cleanup(func() {
			if mounted {
				_ = exec.Command("umount", mnt).Run()
			}
		})
		// Deleted files of many sizes, rewritten the way cloud-init rewrites obj.pkl, among files that stay.
		for i := range 40 {
			name := filepath.Join(mnt, fmt.Sprintf("f%d", i))
			content := strings.Repeat(string(marker)+"x\n", 1+i*i*20)
			if i%3 == 2 {
				content = "kept\n"
			}
			if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if i%3 == 0 {
				if err := os.WriteFile(name, []byte("kept\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if i%3 == 1 {
				run("sync")
				if err := os.Remove(name); err != nil {
					t.Fatal(err)
				}
			}
		}
		run("sync")
		src, err := exec.Command("findmnt", "-n", "-o", "SOURCE", "--target", mnt).Output()
		if err != nil {
			t.Fatal(err)
		}
		rc := filepath.Join("/sys/fs/ext4", filepath.Base(strings.TrimSpace(string(src))), "reserved_clusters")
		reserve, err := os.ReadFile(rc)
		if err != nil {
			t.Fatal(err)
		}
		if fill {
			run("sh", "-c", "set -eu\n"+zeroFill(shellQuote(mnt)))
			if _, err := os.Stat(filepath.Join(mnt, ".imgform-zero")); !os.IsNotExist(err) {
				t.Errorf("the fill file is left: %v", err)
			}
			if after, err := os.ReadFile(rc); err != nil || string(after) != string(reserve) {
				t.Errorf("reserved_clusters is %q after the fill (%v), was %q", after, err, reserve)
			}
			for i := range 40 {
				if i%3 == 1 {
					continue
				}
				if b, err := os.ReadFile(filepath.Join(mnt, fmt.Sprintf("f%d", i))); err != nil || string(b) != "kept\n" {
					t.Errorf("f%d: %q, %v: the fill changed a file", i, b, err)
				}
			}
		}
		run("umount", mnt)
		mounted = false
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if found := strings.Contains(string(b), string(marker)); found == fill {
			t.Errorf("zero fill %v: the deleted bytes are in the file system: %v", fill, found)
		}
	}
}

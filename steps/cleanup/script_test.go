package cleanup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/config"
)

func TestScriptFollowsOptions(t *testing.T) {
	all := Options{Cleanup: config.Cleanup{CloudInit: true, MachineID: true, SSHHostKeys: true, Resolved: true,
		Logs: true, AptLists: true, Trim: true}, BuildUser: "imgform-build", Networkd: true}
	none := Options{BuildUser: "imgform-build"}
	cases := map[string]struct {
		opts      Options
		want, not []string
	}{
		"everything": {opts: all, want: []string{"cloud-init clean --logs --seed", "truncate -s 0 /etc/machine-id",
			"rm -f /etc/ssh/ssh_host_*", "stub-resolv.conf", "journalctl --relinquish-var", "rm -rf /var/lib/apt/lists/*",
			"fstrim", "userdel --force --remove 'imgform-build'", "50-cloud-init", PowerOff}},
		"only what is always done": {opts: none, want: []string{"userdel --force --remove 'imgform-build'", "sync"},
			not: []string{"cloud-init clean", "machine-id", "ssh_host_", "resolv.conf", "journalctl", "apt", "fstrim", "50-cloud-init"}},
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
		Logs: true, AptLists: true, Trim: true}, BuildUser: "o'brien", Networkd: true}
	if err := os.WriteFile(p, []byte(Script(opts)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("%s -n: %v\n%s", sh, err, out)
	}
}

package smoke

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"

	"gitlab.com/imgform/imgform/internal/config"
)

func image(networks ...*config.NetworkUnit) *config.Image {
	return &config.Image{
		Name:      "base",
		Networks:  networks,
		Cleanup:   config.Cleanup{CloudInit: true, MachineID: true, SSHHostKeys: true, Logs: true, AptLists: true},
		SmokeTest: config.SmokeTest{Enabled: true, CloudInit: true, MachineID: true, SSHHostKeys: true, BuildUser: true, Network: true, DNS: true, BuildTraces: true},
	}
}

func dhcpUnit(name, match, metric string) *config.NetworkUnit {
	u := &config.NetworkUnit{Name: name, Sections: []*unit.UnitSection{
		{Section: "Match", Entries: []*unit.UnitEntry{{Name: "Name", Value: match}}},
		{Section: "Network", Entries: []*unit.UnitEntry{{Name: "DHCP", Value: "ipv4"}}},
	}}
	if metric != "" {
		u.Sections = append(u.Sections, &unit.UnitSection{Section: "DHCPv4", Entries: []*unit.UnitEntry{{Name: "RouteMetric", Value: metric}}})
	}
	return u
}

func names(cs []Check) string {
	var out []string
	for _, c := range cs {
		s := c.Name
		if c.Skip != "" {
			s += "(skip)"
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

func TestChecksFollowTheConfiguration(t *testing.T) {
	cases := map[string]struct {
		change func(img *config.Image)
		want   string
	}{
		"everything": {want: "cloud-init machine-id ssh-host-keys build-user network dns build-traces"},
		"no network blocks": {change: func(img *config.Image) { img.Networks = nil },
			want: "cloud-init machine-id ssh-host-keys build-user network(skip) dns build-traces"},
		"a derived image checks its parent's network blocks": {change: func(img *config.Image) {
			img.InheritedNetworks, img.Networks = img.Networks, nil
		}, want: "cloud-init machine-id ssh-host-keys build-user network dns build-traces"},
		"cleanup keeps the identity": {change: func(img *config.Image) { img.Cleanup.MachineID, img.Cleanup.SSHHostKeys = false, false },
			want: "cloud-init machine-id(skip) ssh-host-keys(skip) build-user network dns build-traces"},
		"checks switched off": {change: func(img *config.Image) { img.SmokeTest.DNS, img.SmokeTest.BuildTraces = false, false },
			want: "cloud-init machine-id ssh-host-keys build-user network"},
		"all off": {change: func(img *config.Image) { img.SmokeTest.Enabled = false }, want: ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			img := image(dhcpUnit("50-default", "en*", "100"))
			if tc.change != nil {
				tc.change(img)
			}
			if got := names(Checks(img)); got != tc.want {
				t.Errorf("checks %q, want %q", got, tc.want)
			}
		})
	}
}

// Every script is valid POSIX shell (dash parses it), and the key text changes with what is checked.
func TestScriptsParseAndKeyTextFollowsThem(t *testing.T) {
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Fatal("dash is needed:", err)
	}
	img := image(dhcpUnit("50-default", "en* eth*", "100"), dhcpUnit("60-o'dd", "ib*", ""))
	for _, c := range Checks(img) {
		if c.Script == "" {
			continue
		}
		if out, err := exec.Command(dash, "-n", "-c", c.Script).CombinedOutput(); err != nil {
			t.Errorf("%s: dash -n: %v\n%s\n%s", c.Name, err, out, c.Script)
		}
	}
	before := KeyText(img)
	img.Cleanup.Logs = false
	if KeyText(img) == before {
		t.Error("the key text does not change when the build-traces check does")
	}
}

// fakeGuest puts stand-ins for networkctl, ip, systemctl and journalctl first in PATH, answering as a guest
// with the given links would: name -> network file, setup state, address, default route.
type link struct{ name, file, setup, addr, route string }

func runNetworkScript(t *testing.T, script string, links []link) (string, int) {
	t.Helper()
	bin := t.TempDir()
	var list, status, addrs, routes strings.Builder
	for i, l := range links {
		list.WriteString(strings.Join([]string{" ", string(rune('1' + i)), l.name, "ether", "routable", l.setup}, " ") + "\n")
		status.WriteString("  " + l.name + ") echo '       Network File: " + l.file + "' ;;\n")
		addrs.WriteString("  " + l.name + ") echo '" + l.name + " UP " + l.addr + "' ;;\n")
		routes.WriteString("  " + l.name + ") echo '" + l.route + "' ;;\n")
	}
	scripts := map[string]string{
		"systemctl":  "exit 0",
		"journalctl": "exit 0",
		"networkctl": "case $1 in\nlist) printf '%s' '" + list.String() + "' ;;\nstatus) case $5 in\n" + status.String() + "  esac ;;\nesac",
		"ip": "case \"$*\" in\n*addr*) case $5 in\n" + addrs.String() + "  esac ;;\n*route*show*) case $6 in\n" + routes.String() + "  esac ;;\n" +
			"*) echo 'all routes' ;;\nesac",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("dash", "-c", script)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestNetworkScript(t *testing.T) {
	const file = "/etc/systemd/network/50-default.network"
	good := link{"enp0s3", file, "configured", "10.0.2.15/24", "default via 10.0.2.2 dev enp0s3 proto dhcp src 10.0.2.15 metric 100"}
	cases := map[string]struct {
		links []link
		code  int
		want  string
	}{
		"configured with the metric": {links: []link{{name: "lo", file: "n/a", setup: "unmanaged"}, good}, code: 0,
			want: `network "50-default": enp0s3 is configured, addresses: 10.0.2.15/24`},
		"no interface matched": {links: []link{{name: "lo", file: "n/a", setup: "unmanaged"}, {"ens5", "/run/systemd/network/10-netplan-ens5.network", "configured", "10.0.2.15/24", ""}},
			code: 1, want: `network "50-default": no interface is configured by ` + file},
		"wrong metric": {links: []link{{good.name, file, "configured", good.addr, "default via 10.0.2.2 dev enp0s3 proto dhcp metric 1024"}},
			code: 1, want: "lacks metric 100"},
		"metric 1000 is not 100": {links: []link{{good.name, file, "configured", good.addr, "default via 10.0.2.2 dev enp0s3 metric 1000"}},
			code: 1, want: "lacks metric 100"},
		"no address": {links: []link{{good.name, file, "configuring", "", good.route}}, code: 1, want: "has no global address"},
	}
	script := NetworkScript([]*config.NetworkUnit{dhcpUnit("50-default", "en*", "100")})
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, code := runNetworkScript(t, script, tc.links)
			if code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s", code, tc.code, tc.want, out)
			}
		})
	}
}

package cleanup

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/unit"

	"gitlab.com/imgform/imgform/internal/config"
)

// matchUnit is a network unit with one Name= entry per value in [Match] (none: no Name= at all) and DHCP.
func matchUnit(name string, names ...string) *config.NetworkUnit {
	match := &unit.UnitSection{Section: "Match"}
	if len(names) == 0 {
		match.Entries = append(match.Entries, &unit.UnitEntry{Name: "MACAddress", Value: "52:54:00:12:34:56"})
	}
	for _, n := range names {
		match.Entries = append(match.Entries, &unit.UnitEntry{Name: "Name", Value: n})
	}
	network := &unit.UnitSection{Section: "Network", Entries: []*unit.UnitEntry{{Name: "DHCP", Value: "yes"}}}
	return &config.NetworkUnit{Name: name, Sections: []*unit.UnitSection{match, network}}
}

func TestClaimedGlobs(t *testing.T) {
	cases := map[string]struct {
		units []*config.NetworkUnit
		want  []string
	}{
		"one list":               {[]*config.NetworkUnit{matchUnit("a", "en* eth*")}, []string{"en*", "eth*"}},
		"repeated keys and dups": {[]*config.NetworkUnit{matchUnit("a", "en*", "eth0"), matchUnit("b", "eth0  wl?")}, []string{"en*", "eth0", "wl?"}},
		"empty value resets":     {[]*config.NetworkUnit{matchUnit("a", "eth0", "", "en*")}, []string{"en*"}},
		"no Name claims all":     {[]*config.NetworkUnit{matchUnit("a", "en*"), matchUnit("b")}, []string{"*"}},
		"reset to nothing":       {[]*config.NetworkUnit{matchUnit("a", "eth0", "")}, []string{"*"}},
		"negated claims all":     {[]*config.NetworkUnit{matchUnit("a", "!eth0 eth1")}, []string{"*"}},
		"a star is all":          {[]*config.NetworkUnit{matchUnit("a", "en* *")}, []string{"*"}},
		"other sections ignored": {[]*config.NetworkUnit{{Name: "a", Sections: []*unit.UnitSection{
			{Section: "Match", Entries: []*unit.UnitEntry{{Name: "Name", Value: "eth0"}}},
			{Section: "Link", Entries: []*unit.UnitEntry{{Name: "Name", Value: "wlan0"}}}}}}, []string{"eth0"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := claimedGlobs(tc.units); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("claimedGlobs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNetworkHandoffWithoutUnits(t *testing.T) {
	if s := NetworkHandoff(nil); s != "" {
		t.Errorf("NetworkHandoff(nil) = %q, want nothing", s)
	}
}

// gone marks a file the handoff removed in a case's changes.
const gone = "(removed)"

// The source trees. A symlink is written as "-> target".
var (
	networkdUnits = map[string]string{
		"lib/systemd/system/systemd-networkd.service": "[Unit]\nDescription=Network Configuration\n\n[Service]\nExecStart=/lib/systemd/systemd-networkd\n\n" +
			"[Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket\nAlias=dbus-org.freedesktop.network1.service\n",
		"lib/systemd/system/systemd-networkd.socket": "[Unit]\nDescription=Network Service Netlink Socket\n\n[Socket]\nListenNetlink=route 1361\n\n" +
			"[Install]\nWantedBy=sockets.target\n",
	}
	resolvedUnit = map[string]string{
		"usr/lib/systemd/system/systemd-resolved.service": "[Unit]\nDescription=Network Name Resolution\n\n[Service]\nExecStart=/lib/systemd/systemd-resolved\n\n" +
			"[Install]\nWantedBy=multi-user.target\nAlias=dbus-org.freedesktop.resolve1.service\n",
	}
	// what systemctl --root enable creates for those units
	networkdLinks = map[string]string{
		"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "-> /lib/systemd/system/systemd-networkd.service",
		"etc/systemd/system/dbus-org.freedesktop.network1.service":            "-> /lib/systemd/system/systemd-networkd.service",
		"etc/systemd/system/sockets.target.wants/systemd-networkd.socket":     "-> /lib/systemd/system/systemd-networkd.socket",
	}
	resolvedLinks = map[string]string{
		"etc/systemd/system/multi-user.target.wants/systemd-resolved.service": "-> /usr/lib/systemd/system/systemd-resolved.service",
		"etc/systemd/system/dbus-org.freedesktop.resolve1.service":            "-> /usr/lib/systemd/system/systemd-resolved.service",
	}
	cloudInit = map[string]string{
		"etc/cloud/cloud.cfg": "datasource_list: [NoCloud]\n",
		"etc/resolv.conf":     "nameserver 10.0.2.3\n",
	}
	cloudCfgWritten = map[string]string{
		"etc/cloud/cloud.cfg.d/99-imgform-disable-network-config.cfg": "network: {config: disabled}\n",
	}

	ifupdown = map[string]string{
		"etc/network/interfaces": `# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo eth0
iface lo inet loopback

# The primary network interface
allow-hotplug eth0
iface eth0 inet dhcp
	# the build network's resolver
	dns-nameservers 10.0.2.3
iface eth0 inet6 auto
    accept_ra 2

# Wi-Fi stays with ifupdown
allow-hotplug wlan0
iface wlan0 inet dhcp
	wpa-conf /etc/wpa_supplicant/wpa_supplicant.conf
`,
		"etc/network/interfaces.d/50-cloud-init": "auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n",
		// no newline at the end
		"etc/network/interfaces.d/60-extra":     "auto eth1 wlan1\niface eth1 inet static\n  address 192.0.2.10/24\n  gateway 192.0.2.1\niface wlan1 inet manual",
		"etc/network/interfaces.d/70-untouched": "iface wlan2 inet manual\n",
	}
	ifupdownRewritten = map[string]string{
		"etc/network/interfaces": `# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface

# Wi-Fi stays with ifupdown
allow-hotplug wlan0
iface wlan0 inet dhcp
	wpa-conf /etc/wpa_supplicant/wpa_supplicant.conf
`,
		"etc/network/interfaces.d/50-cloud-init": gone,
		"etc/network/interfaces.d/60-extra":      "auto wlan1\niface wlan1 inet manual",
	}

	netplan = map[string]string{
		"etc/netplan/50-cloud-init.yaml": "network:\n    ethernets:\n        eth0:\n            dhcp4: true\n    version: 2\n",
		"etc/netplan/60-custom.yaml": `# the source's own configuration
network:
  version: 2
  renderer: networkd
  ethernets:
    eth0:
      dhcp4: true
    lan:
      match:
        name: enp*
      dhcp4: true
    mgmt:
      match:
        macaddress: "52:54:00:12:34:56"
      set-name: mgmt0
      addresses: [192.0.2.5/24]
    renamed:
      match:
        macaddress: "52:54:00:ab:cd:ef"
      set-name: eth9
  wifis:
    wlan0:
      access-points:
        home:
          password: secret
      dhcp4: true
`,
		"etc/netplan/70-claimed-only.yaml":  "network:\n  version: 2\n  ethernets:\n    ens3:\n      dhcp4: true\n",
		"etc/netplan/40-shadow.yaml":        "network:\n  version: 2\n  ethernets:\n    eth2:\n      dhcp4: true\n",
		"lib/netplan/40-shadow.yaml":        "network:\n  version: 2\n  ethernets:\n    eth3:\n      dhcp4: true\n",
		"lib/netplan/10-vendor.yaml":        "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp6: true\n  bridges:\n    br0:\n      dhcp4: true\n",
		"usr/lib/netplan/20-vendor.yaml":    "network:\n  version: 2\n  ethernets:\n    eth1:\n      dhcp4: true\n",
		"usr/lib/netplan/30-unclaimed.yaml": "network:\n  version: 2\n  wifis:\n    wlan1:\n      dhcp4: true\n",
		// netplan.io's NetworkManager integration without NetworkManager installed: nothing to do there
		"etc/NetworkManager/conf.d/.keep": "",
		"etc/resolv.conf":                 "-> ../run/systemd/resolve/stub-resolv.conf",
		"etc/cloud/cloud.cfg":             "datasource_list: [NoCloud]\n",
	}
	netplanRewritten = map[string]string{
		"etc/netplan/50-cloud-init.yaml": gone,
		"etc/netplan/60-custom.yaml": `network:
  version: 2
  renderer: networkd
  ethernets:
    mgmt:
      match:
        macaddress: '52:54:00:12:34:56'
      set-name: mgmt0
      addresses:
      - 192.0.2.5/24
  wifis:
    wlan0:
      access-points:
        home:
          password: secret
      dhcp4: true
`,
		"etc/netplan/70-claimed-only.yaml": gone,
		"etc/netplan/40-shadow.yaml":       "network:\n  version: 2\n",
		"etc/netplan/10-vendor.yaml":       "network:\n  version: 2\n  bridges:\n    br0:\n      dhcp4: true\n",
		"etc/netplan/20-vendor.yaml":       "network:\n  version: 2\n",
	}

	networkManager = map[string]string{
		"lib/systemd/system/NetworkManager.service":                             "[Unit]\nDescription=Network Manager\n\n[Service]\nExecStart=/usr/sbin/NetworkManager\n",
		"etc/NetworkManager/NetworkManager.conf":                                "[main]\nplugins=ifupdown,keyfile\n",
		"etc/NetworkManager/conf.d/10-globally-managed-devices.conf":            "[keyfile]\nunmanaged-devices=none\n",
		"etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection":    "[connection]\nid=cloud-init eth0\ntype=ethernet\n",
		"etc/NetworkManager/system-connections/Wired connection 1.nmconnection": "[connection]\nid=Wired connection 1\ntype=ethernet\ninterface-name=enp1s0\n",
		"etc/NetworkManager/system-connections/home-wifi.nmconnection":          "[connection]\nid=home\ntype=wifi\ninterface-name=wlan0\n",
		"etc/NetworkManager/system-connections/vpn.nmconnection":                "[connection]\nid=vpn\ntype=vpn\n",
		"etc/resolv.conf": "nameserver 10.0.2.3\n",
	}
)

// merge returns the union of the maps; later ones win.
func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[filepath.Clean(k)] = v
		}
	}
	return out
}

func TestNetworkHandoff(t *testing.T) {
	sh := requireHandoffTools(t)
	resolvConfLinked := map[string]string{"etc/resolv.conf": "-> /run/systemd/resolve/stub-resolv.conf"}
	cases := map[string]struct {
		units []*config.NetworkUnit
		tree  map[string]string
		// changes are the files the handoff wrote, rewrote (new content) or removed (gone), exactly
		changes map[string]string
		code    int
		stdout  []string
		stderr  string // a part of it
	}{
		"ifupdown source": {
			units:   []*config.NetworkUnit{matchUnit("50-default", "en* eth*")},
			tree:    merge(networkdUnits, resolvedUnit, cloudInit, ifupdown),
			changes: merge(networkdLinks, resolvedLinks, resolvConfLinked, cloudCfgWritten, ifupdownRewritten),
			stdout: []string{
				"imgform: network: enabled systemd-networkd",
				"imgform: network: enabled systemd-resolved",
				"imgform: network: pointed /etc/resolv.conf at /run/systemd/resolve/stub-resolv.conf",
				"imgform: network: wrote /etc/cloud/cloud.cfg.d/99-imgform-disable-network-config.cfg",
				"imgform: network: removed /etc/network/interfaces.d/50-cloud-init",
				"imgform: network: removed auto eth0 from /etc/network/interfaces",
				"imgform: network: removed allow-hotplug eth0 from /etc/network/interfaces",
				"imgform: network: removed iface eth0 from /etc/network/interfaces",
				"imgform: network: removed iface eth0 from /etc/network/interfaces",
				"imgform: network: removed auto eth1 from /etc/network/interfaces.d/60-extra",
				"imgform: network: removed iface eth1 from /etc/network/interfaces.d/60-extra",
			},
		},
		"netplan source": {
			units:   []*config.NetworkUnit{matchUnit("50-default", "en*", "eth*")},
			tree:    merge(networkdUnits, resolvedUnit, netplan),
			changes: merge(networkdLinks, resolvedLinks, cloudCfgWritten, netplanRewritten),
			stdout: []string{
				"imgform: network: enabled systemd-networkd",
				"imgform: network: enabled systemd-resolved",
				"imgform: network: wrote /etc/cloud/cloud.cfg.d/99-imgform-disable-network-config.cfg",
				"imgform: network: removed /etc/netplan/50-cloud-init.yaml",
				"imgform: network: removed ethernets eth2 from /etc/netplan/40-shadow.yaml",
				"imgform: network: emptied /etc/netplan/40-shadow.yaml, which still overrides /lib/netplan/40-shadow.yaml",
				"imgform: network: removed ethernets eth0 from /etc/netplan/60-custom.yaml",
				"imgform: network: removed ethernets lan from /etc/netplan/60-custom.yaml",
				"imgform: network: removed ethernets renamed from /etc/netplan/60-custom.yaml",
				"imgform: network: removed ethernets ens3 from /etc/netplan/70-claimed-only.yaml",
				"imgform: network: removed /etc/netplan/70-claimed-only.yaml: no interfaces left",
				"imgform: network: removed ethernets eth0 of /lib/netplan/10-vendor.yaml with an override in /etc/netplan/10-vendor.yaml",
				"imgform: network: removed ethernets eth1 of /usr/lib/netplan/20-vendor.yaml with an override in /etc/netplan/20-vendor.yaml",
			},
		},
		"NetworkManager source": {
			units: []*config.NetworkUnit{matchUnit("50-default", "en* eth*")},
			tree:  merge(networkdUnits, resolvedUnit, networkManager),
			changes: merge(networkdLinks, resolvedLinks, resolvConfLinked, map[string]string{
				"etc/NetworkManager/conf.d/90-imgform-unmanaged.conf": "# imgform: systemd-networkd manages these interfaces (network blocks)\n" +
					"[keyfile]\nunmanaged-devices=interface-name:en*;interface-name:eth*\n",
				"etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection":    gone,
				"etc/NetworkManager/system-connections/Wired connection 1.nmconnection": gone,
			}),
			stdout: []string{
				"imgform: network: enabled systemd-networkd",
				"imgform: network: enabled systemd-resolved",
				"imgform: network: pointed /etc/resolv.conf at /run/systemd/resolve/stub-resolv.conf",
				"imgform: network: wrote /etc/NetworkManager/conf.d/90-imgform-unmanaged.conf",
				"imgform: network: removed /etc/NetworkManager/system-connections/Wired connection 1.nmconnection",
				"imgform: network: removed /etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection",
			},
		},
		"no networkd installed": {
			units:   []*config.NetworkUnit{matchUnit("50-default", "en*")},
			tree:    merge(resolvedUnit, cloudInit, ifupdown, netplan, networkManager),
			changes: map[string]string{},
			code:    1,
			stderr:  "imgform: the image has network blocks but no systemd-networkd: install it in a provisioner (package systemd-networkd on Debian 13 and later",
		},
		"no resolved installed": {
			units:   []*config.NetworkUnit{matchUnit("50-default", "en* eth*")},
			tree:    merge(networkdUnits, cloudInit, ifupdown),
			changes: merge(networkdLinks, cloudCfgWritten, ifupdownRewritten),
			stdout: []string{
				"imgform: network: enabled systemd-networkd",
				"imgform: warning: systemd-resolved is not installed: DNS servers from DHCP will not reach /etc/resolv.conf (install systemd-resolved in a provisioner, or write /etc/resolv.conf yourself)",
				"imgform: network: wrote /etc/cloud/cloud.cfg.d/99-imgform-disable-network-config.cfg",
				"imgform: network: removed /etc/network/interfaces.d/50-cloud-init",
				"imgform: network: removed auto eth0 from /etc/network/interfaces",
				"imgform: network: removed allow-hotplug eth0 from /etc/network/interfaces",
				"imgform: network: removed iface eth0 from /etc/network/interfaces",
				"imgform: network: removed iface eth0 from /etc/network/interfaces",
				"imgform: network: removed auto eth1 from /etc/network/interfaces.d/60-extra",
				"imgform: network: removed iface eth1 from /etc/network/interfaces.d/60-extra",
			},
		},
		"unit without Name claims all but lo": {
			units: []*config.NetworkUnit{matchUnit("50-default", "en*"), matchUnit("60-by-mac")},
			tree:  merge(networkdUnits, resolvedUnit, cloudInit, ifupdown, networkManager),
			changes: merge(networkdLinks, resolvedLinks, resolvConfLinked, cloudCfgWritten, map[string]string{
				"etc/network/interfaces": `# This file describes the network interfaces available on your system
# and how to activate them. For more information, see interfaces(5).

source /etc/network/interfaces.d/*

# The loopback network interface
auto lo
iface lo inet loopback

# The primary network interface

# Wi-Fi stays with ifupdown
`,
				"etc/network/interfaces.d/50-cloud-init": gone,
				"etc/network/interfaces.d/60-extra":      "",
				"etc/network/interfaces.d/70-untouched":  "",
				"etc/NetworkManager/conf.d/90-imgform-unmanaged.conf": "# imgform: systemd-networkd manages these interfaces (network blocks)\n" +
					"[keyfile]\nunmanaged-devices=interface-name:*;except:interface-name:lo\n",
				"etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection":    gone,
				"etc/NetworkManager/system-connections/Wired connection 1.nmconnection": gone,
				"etc/NetworkManager/system-connections/home-wifi.nmconnection":          gone,
			}),
			stdout: []string{
				"imgform: network: enabled systemd-networkd",
				"imgform: network: enabled systemd-resolved",
				"imgform: network: pointed /etc/resolv.conf at /run/systemd/resolve/stub-resolv.conf",
				"imgform: network: wrote /etc/cloud/cloud.cfg.d/99-imgform-disable-network-config.cfg",
				"imgform: network: removed /etc/network/interfaces.d/50-cloud-init",
				"imgform: network: removed auto eth0 from /etc/network/interfaces",
				"imgform: network: removed allow-hotplug eth0 from /etc/network/interfaces",
				"imgform: network: removed iface eth0 from /etc/network/interfaces",
				"imgform: network: removed iface eth0 from /etc/network/interfaces",
				"imgform: network: removed allow-hotplug wlan0 from /etc/network/interfaces",
				"imgform: network: removed iface wlan0 from /etc/network/interfaces",
				"imgform: network: removed auto eth1 from /etc/network/interfaces.d/60-extra",
				"imgform: network: removed auto wlan1 from /etc/network/interfaces.d/60-extra",
				"imgform: network: removed iface eth1 from /etc/network/interfaces.d/60-extra",
				"imgform: network: removed iface wlan1 from /etc/network/interfaces.d/60-extra",
				"imgform: network: removed iface wlan2 from /etc/network/interfaces.d/70-untouched",
				"imgform: network: wrote /etc/NetworkManager/conf.d/90-imgform-unmanaged.conf",
				"imgform: network: removed /etc/NetworkManager/system-connections/Wired connection 1.nmconnection",
				"imgform: network: removed /etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection",
				"imgform: network: removed /etc/NetworkManager/system-connections/home-wifi.nmconnection",
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.tree)
			before := readTree(t, root)
			stdout, stderr, code := runHandoff(t, sh, root, NetworkHandoff(tc.units))
			if code != tc.code {
				t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			if got := changes(before, readTree(t, root)); !reflect.DeepEqual(got, tc.changes) {
				for _, p := range sortedKeys(got, tc.changes) {
					if got[p] != tc.changes[p] {
						t.Errorf("%s:\n got: %q\nwant: %q", p, got[p], tc.changes[p])
					}
				}
			}
			var lines []string
			if stdout != "" {
				lines = strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			}
			if !reflect.DeepEqual(lines, tc.stdout) {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, strings.Join(tc.stdout, "\n"))
			}
			if tc.stderr == "" && stderr != "" || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr: %q, want it to contain %q", stderr, tc.stderr)
			}
			// netplan reads files that others can read with a warning: they may hold Wi-Fi passwords
			for p, content := range tc.changes {
				if strings.HasPrefix(p, "etc/netplan/") && content != gone {
					if fi, err := os.Stat(filepath.Join(root, p)); err != nil || fi.Mode().Perm() != 0o600 {
						t.Errorf("%s: mode %v (%v), want 0600", p, fi.Mode().Perm(), err)
					}
				}
			}
		})
	}
}

// A glob is data, never code: quotes and command substitutions in Name= reach the files as written.
func TestNetworkHandoffQuotesGlobs(t *testing.T) {
	sh := requireHandoffTools(t)
	root := t.TempDir()
	hostile := `it's$(touch${IFS}pwned)*`
	writeTree(t, root, merge(networkdUnits, map[string]string{
		"lib/systemd/system/NetworkManager.service": "[Service]\n",
		"etc/NetworkManager/NetworkManager.conf":    "[main]\n",
		"etc/network/interfaces":                    "auto eth0 " + hostile + "x\niface eth0 inet dhcp\n",
		"etc/netplan/60-custom.yaml":                "network:\n  ethernets:\n    \"" + hostile + "x\":\n      dhcp4: true\n    eth0:\n      dhcp4: true\n",
	}))
	stdout, stderr, code := runHandoff(t, sh, root, NetworkHandoff([]*config.NetworkUnit{matchUnit("50-odd", hostile)}))
	if code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(root, "pwned")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a glob ran as a command: %v", err)
	}
	tree := readTree(t, root)
	for p, want := range map[string]string{
		"etc/NetworkManager/conf.d/90-imgform-unmanaged.conf": "unmanaged-devices=interface-name:" + hostile + "\n",
		"etc/network/interfaces":                              "auto eth0\niface eth0 inet dhcp\n",
		"etc/netplan/60-custom.yaml":                          "eth0:",
	} {
		if !strings.HasSuffix(tree[p], want) && !strings.Contains(tree[p], want) {
			t.Errorf("%s: %q, want it to contain %q", p, tree[p], want)
		}
	}
	if strings.Contains(tree["etc/netplan/60-custom.yaml"], "pwned") {
		t.Errorf("the claimed netplan entry is still there: %q", tree["etc/netplan/60-custom.yaml"])
	}
}

// requireHandoffTools returns dash and fails when systemctl or Debian's python3 with yaml is missing:
// scripts/install-deps.sh installs them.
func requireHandoffTools(t *testing.T) string {
	t.Helper()
	sh, err := exec.LookPath("dash")
	if err != nil {
		t.Fatal("needs dash (run scripts/install-deps.sh)")
	}
	if _, err := exec.LookPath("systemctl"); err != nil {
		t.Fatal("needs systemctl (run scripts/install-deps.sh)")
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import yaml").CombinedOutput(); err != nil {
		t.Fatalf("needs /usr/bin/python3 with yaml (run scripts/install-deps.sh): %v\n%s", err, out)
	}
	return sh
}

// runHandoff runs the fragment under set -eu with the tree at root as the image, in an empty folder (so
// that an unquoted glob would find nothing to expand) and with Debian's python3 first in PATH, as in a guest.
func runHandoff(t *testing.T, sh, root, fragment string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(sh, "-c", "set -eu\n"+fragment)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "IMGFORM_ROOT="+root, "PATH=/usr/bin:/bin:/usr/sbin:/sbin:"+os.Getenv("PATH"))
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// writeTree creates the files under root; a value "-> target" is a symlink.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "-> "); ok {
			err = os.Symlink(target, full)
		} else {
			err = os.WriteFile(full, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// readTree returns the files and symlinks under root ("-> target"); folders are left out.
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	tree := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			tree[rel] = "-> " + target
			return err
		}
		b, err := os.ReadFile(p)
		tree[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// changes returns what differs in after: new or changed files with their content, removed ones as gone.
func changes(before, after map[string]string) map[string]string {
	out := map[string]string{}
	for p, content := range after {
		if old, ok := before[p]; !ok || old != content {
			out[p] = content
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			out[p] = gone
		}
	}
	return out
}

func sortedKeys(ms ...map[string]string) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPasstArgs(t *testing.T) {
	dir := t.TempDir()
	conf := func(content string) string {
		p := filepath.Join(dir, "resolv.conf")
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := []string{"--no-map-gw", "--address", "10.0.2.15", "--netmask", "24", "--gateway", "10.0.2.2",
		"--tcp-ports", "127.0.0.1/2222:22", "--udp-ports", "none"}
	cases := map[string]struct {
		resolv     string
		dnsForward bool
	}{
		"outside resolver":             {"nameserver 10.255.255.53\n", false},
		"systemd-resolved stub":        {"# stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\n", true},
		"loopback and outside":         {"nameserver 127.0.0.1\nnameserver 192.0.2.53\n", false},
		"loopback IPv4 and IPv6":       {"nameserver 127.0.0.53\nnameserver ::1\n", true},
		"no nameserver":                {"search example.org\n", false},
		"garbage after the keyword":    {"nameserver not-an-address\nnameserver 127.0.0.1\n", true},
		"commented loopback is no dns": {"#nameserver 127.0.0.1\nnameserver 10.0.0.1\n", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := passtArgs("/s/net.sock", "/s/passt.log", 2222, conf(tc.resolv))
			if got[0] != PasstBinary || !inOrder(got, base) {
				t.Errorf("argv %q lacks %q", got, base)
			}
			if slices.Contains(got, "--one-off") || slices.ContainsFunc(got, func(a string) bool { return strings.Contains(a, "0.0.0.0") }) {
				t.Errorf("argv %q", got)
			}
			fwd := inOrder(got, []string{"--dns-forward", dnsForwardAddr, "--dns", dnsForwardAddr})
			if fwd != tc.dnsForward {
				t.Errorf("DNS forward %v, want %v: %q", fwd, tc.dnsForward, got)
			}
		})
	}
	if got := passtArgs("/s", "/l", 1, filepath.Join(dir, "missing")); slices.Contains(got, "--dns-forward") {
		t.Errorf("no resolv.conf gives a DNS forward: %q", got)
	}
}

func TestResolveNetwork(t *testing.T) {
	yes, no := true, false
	defer func(b string) { PasstBinary = b }(PasstBinary)
	for _, installed := range []bool{true, false} {
		PasstBinary = "passt"
		if !installed {
			PasstBinary = "imgform-no-such-passt"
		}
		cases := []struct {
			name       string
			want       *bool
			mode       string
			warn, fail bool
		}{
			{"unset", nil, NetworkIsolated, false, false},
			{"host_loopback = false", &no, NetworkIsolated, false, false},
			{"host_loopback = true", &yes, NetworkUser, false, false},
		}
		if !installed {
			cases[0].mode, cases[0].warn = NetworkUser, true
			cases[1].mode, cases[1].fail = "", true
		}
		for _, tc := range cases {
			mode, warning, err := ResolveNetwork(tc.want)
			if mode != tc.mode || (warning != "") != tc.warn || (err != nil) != tc.fail {
				t.Errorf("passt installed %v, %s: %q, %q, %v", installed, tc.name, mode, warning, err)
			}
			if err != nil && !strings.Contains(err.Error(), "apt-get install passt") {
				t.Errorf("error does not say what to install: %v", err)
			}
			if warning != "" && !strings.Contains(warning, "10.0.2.2") {
				t.Errorf("warning does not say what the guest reaches: %s", warning)
			}
		}
	}
}

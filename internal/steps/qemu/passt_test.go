package qemu

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPasstArgs(t *testing.T) {
	got := passtArgs("/s/net.sock", "/s/passt.log", 2222, nil)
	// The same address on every host, only SSH forwarded and only from 127.0.0.1.
	for _, want := range [][]string{
		{"--no-map-gw"},
		{"--address", "10.0.2.15", "--netmask", "24", "--gateway", "10.0.2.2"},
		{"--tcp-ports", "127.0.0.1/2222:22", "--udp-ports", "none"},
	} {
		if !inOrder(got, want) {
			t.Errorf("argv %q lacks %q", got, want)
		}
	}
	if got[0] != PasstBinary || slices.Contains(got, "--one-off") || slices.Contains(got, "--dns") ||
		slices.Contains(got, "--dns-forward") ||
		slices.ContainsFunc(got, func(a string) bool { return strings.Contains(a, "0.0.0.0") }) {
		t.Errorf("argv %q", got)
	}
	if got := passtArgs("/s", "/l", 1, []string{"192.0.2.53", "192.0.2.54"}); !inOrder(got, []string{"--dns", "192.0.2.53", "--dns", "192.0.2.54"}) {
		t.Errorf("argv %q does not announce the given servers", got)
	}
}

// useResolvConfs points guestDNS at files of the test with the given content ("" for no file).
func useResolvConfs(t *testing.T, host, upstream string) {
	t.Helper()
	dir := t.TempDir()
	old, oldUp := hostResolvConf, upstreamResolvConf
	t.Cleanup(func() { hostResolvConf, upstreamResolvConf = old, oldUp })
	hostResolvConf, upstreamResolvConf = filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "upstream.conf")
	for path, content := range map[string]string{hostResolvConf: host, upstreamResolvConf: upstream} {
		if content == "" {
			continue
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The guest's DNS servers: passt's own choice where the host has one off its loopback, systemd-resolved's
// upstream servers where all are on loopback, none (and a warning) where nothing is known.
func TestGuestDNS(t *testing.T) {
	stub := "# systemd-resolved stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\n"
	cases := map[string]struct {
		host, upstream string
		servers        []string
		ok             bool
	}{
		"outside resolver":              {"nameserver 10.255.255.53\n", "", nil, true},
		"loopback and outside":          {"nameserver 127.0.0.1\nnameserver 192.0.2.53\n", "", nil, true},
		"systemd-resolved stub":         {stub, "nameserver 192.0.2.1\nnameserver 2001:db8::1\nnameserver 192.0.2.2\n", []string{"192.0.2.1", "192.0.2.2"}, true},
		"stub without upstream file":    {stub, "", nil, false},
		"stub with a loopback upstream": {stub, "nameserver 127.0.0.1\n", nil, false},
		"loopback IPv4 and IPv6":        {"nameserver 127.0.0.53\nnameserver ::1\n", "nameserver 198.51.100.7\n", []string{"198.51.100.7"}, true},
		"no nameserver":                 {"search example.org\n", "", nil, false},
		"no resolv.conf":                {"", "", nil, false},
		"commented loopback is no dns":  {"#nameserver 127.0.0.1\nnameserver 10.0.0.1\n", "", nil, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			useResolvConfs(t, tc.host, tc.upstream)
			servers, ok := guestDNS()
			if !slices.Equal(servers, tc.servers) || ok != tc.ok {
				t.Errorf("guestDNS = %q, %v; want %q, %v", servers, ok, tc.servers, tc.ok)
			}
		})
	}
	t.Run("warning", func(t *testing.T) {
		if _, err := exec.LookPath(PasstBinary); err != nil {
			t.Skip("passt is not installed")
		}
		useResolvConfs(t, stub, "")
		mode, warning, err := ResolveNetwork(nil)
		if mode != NetworkIsolated || err != nil || !strings.Contains(warning, "no DNS server") || !strings.Contains(warning, "host_loopback") {
			t.Errorf("ResolveNetwork with loopback resolvers only = %q, %q, %v", mode, warning, err)
		}
	})
}

func TestResolveNetwork(t *testing.T) {
	useResolvConfs(t, "nameserver 192.0.2.53\n", "")
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

package qemu

import (
	"slices"
	"strings"
	"testing"
)

func TestPasstArgs(t *testing.T) {
	got := passtArgs("/s/net.sock", "/s/passt.log", 2222)
	// The same addresses on every host, a DNS relay, only SSH forwarded and only from 127.0.0.1.
	for _, want := range [][]string{
		{"--no-map-gw"},
		{"--address", "10.0.2.15", "--netmask", "24", "--gateway", "10.0.2.2"},
		{"--dns-forward", dnsForwardAddr, "--dns", dnsForwardAddr},
		{"--tcp-ports", "127.0.0.1/2222:22", "--udp-ports", "none"},
	} {
		if !inOrder(got, want) {
			t.Errorf("argv %q lacks %q", got, want)
		}
	}
	if got[0] != PasstBinary || slices.Contains(got, "--one-off") ||
		slices.ContainsFunc(got, func(a string) bool { return strings.Contains(a, "0.0.0.0") }) {
		t.Errorf("argv %q", got)
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

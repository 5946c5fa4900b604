package ssh

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// firstBoot is the serial console of a real first boot of the test image (Debian 12, cloud-init 22.4.2):
// ssh-keygen's fingerprints early in cloud-init's init stage, sshd after it, and the FINGERPRINTS and KEYS
// blocks at the end of the final stage.
func firstBoot(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("testdata/console/debian-12-first-boot.log")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cut returns s up to the first occurrence of marker.
func cut(t testing.TB, s, marker string) string {
	t.Helper()
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("marker %q not in the log", marker)
	}
	return s[:i]
}

func TestParseConsole(t *testing.T) {
	log := firstBoot(t)
	const (
		rsa     = "SHA256:lXWS9QT6sieySTmfjWfGHYAfo+aYSjXhTlSa3CdLLKU"
		dsa     = "SHA256:u0MLCaAJIIkgupny9pFVbMHQ+3VRrp50RknTlpEJjZo"
		ecdsa   = "SHA256:P5rE8RYcqnaT0CQ1je+E1jgT+r3b49/jULZaXVyRzPA"
		ed25519 = "SHA256:hM/zmBVRgy9NDG7yWUYIw9TAY3IUm54yxm/DkHivmBg"
	)
	all := []string{rsa, dsa, ecdsa, ed25519}
	cases := map[string]struct {
		text     string
		complete bool
		keys     []string // types, in order
		fps      []string
	}{
		"whole first boot": {text: log, complete: true,
			keys: []string{"ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"}, fps: all},
		"when sshd starts, before the final stage": {text: cut(t, log, "running 'modules:final'"), fps: all},
		"during key generation":                    {text: cut(t, log, "Generating public/private ecdsa key pair"), fps: []string{rsa, dsa}},
		"before any key":                           {text: cut(t, log, "Generating public/private rsa key pair")},
		"keys block cut short":                     {text: cut(t, log, "-----END SSH HOST KEY KEYS-----"), fps: all},
		"later boot prints nothing": {text: "[    0.000000] Linux version 6.1.0-28-cloud-amd64\r\n" +
			"[   80.1] cloud-init[400]: Cloud-init v. 22.4.2 finished at Wed, 25 Nov 2026 23:00:00 +0000.\r\n"},
		"a second block replaces the first": {
			text: log + "\r\n-----BEGIN SSH HOST KEY KEYS-----\r\n" +
				"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHMewNi7JmH/hJJoQU5BROL/nzSO1u5XPwdLOrW82qXf root@explore\r\n" +
				"-----END SSH HOST KEY KEYS-----\r\n",
			complete: true, keys: []string{"ssh-ed25519"}, fps: all},
		"garbled key line is skipped": {
			text: "-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAAC3Nz[  12.3] random: crng init done\n" +
				"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHMewNi7JmH/hJJoQU5BROL/nzSO1u5XPwdLOrW82qXf root@explore\n" +
				"-----END SSH HOST KEY KEYS-----\n",
			complete: true, keys: []string{"ssh-ed25519"}},
		"fingerprints elsewhere are ignored": {
			text: "ci-info: | ssh-ed25519 | SHA256:hM/zmBVRgy9NDG7yWUYIw9TAY3IUm54yxm/DkHivmBg | - | user key |\n"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := ParseConsole(tc.text)
			if c.Complete != tc.complete {
				t.Errorf("Complete = %v, want %v", c.Complete, tc.complete)
			}
			var types []string
			for _, k := range c.Keys {
				types = append(types, k.Type())
			}
			if strings.Join(types, " ") != strings.Join(tc.keys, " ") {
				t.Errorf("keys %v, want %v", types, tc.keys)
			}
			if strings.Join(c.Fingerprints, " ") != strings.Join(tc.fps, " ") {
				t.Errorf("fingerprints %v, want %v", c.Fingerprints, tc.fps)
			}
			for _, k := range c.Keys {
				if !c.Allows(k) {
					t.Errorf("a key of the block is not allowed: %s", ssh.FingerprintSHA256(k))
				}
			}
		})
	}
}

func TestHostKeysFromConsole(t *testing.T) {
	log := firstBoot(t)
	keys, err := HostKeysFromConsole(log)
	if err != nil {
		t.Fatal(err)
	}
	c := ParseConsole(log)
	for _, k := range keys {
		// Every key of the block has its fingerprint printed by ssh-keygen earlier: the early pin and the
		// late one agree.
		fp := ssh.FingerprintSHA256(k)
		if !strings.Contains(strings.Join(c.Fingerprints, " "), fp) {
			t.Errorf("key %s %s has no ssh-keygen fingerprint line", k.Type(), fp)
		}
	}
	if _, err := HostKeysFromConsole(cut(t, log, "running 'modules:final'")); !errors.Is(err, ErrNoHostKeys) {
		t.Errorf("before the final stage: %v, want ErrNoHostKeys", err)
	}
}

func TestHostKeyRecord(t *testing.T) {
	keys, err := HostKeysFromConsole(firstBoot(t))
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseHostKeys(MarshalHostKeys(keys))
	if err != nil || len(back) != len(keys) {
		t.Fatalf("ParseHostKeys = %d keys, %v", len(back), err)
	}
	for i := range keys {
		if !keysEqual(keys[i], back[i]) {
			t.Errorf("key %d differs after the round trip", i)
		}
	}
	for name, in := range map[string]string{"empty": "", "blank lines": "\n\n", "garbage": "not a key\n"} {
		if _, err := ParseHostKeys([]byte(in)); err == nil {
			t.Errorf("%s: ParseHostKeys succeeded", name)
		}
	}
	if got := PinKeys(keys...).Algorithms(); strings.Join(got, " ") !=
		"ecdsa-sha2-nistp256 ssh-ed25519 rsa-sha2-512 rsa-sha2-256 ssh-rsa" {
		t.Errorf("Algorithms = %v", got)
	}
}

func FuzzParseConsole(f *testing.F) {
	f.Add(firstBoot(f))
	f.Add("-----BEGIN SSH HOST KEY KEYS-----\nssh-rsa AAAA\n-----END SSH HOST KEY KEYS-----\n")
	f.Add("The key fingerprint is:\nSHA256:" + strings.Repeat("A", 43) + "\n")
	f.Fuzz(func(t *testing.T, s string) {
		c := ParseConsole(s)
		if c.Complete && !strings.Contains(s, endKeys) {
			t.Errorf("Complete without an END marker")
		}
		for _, fp := range c.Fingerprints {
			if !strings.Contains(s, fp) {
				t.Errorf("fingerprint %q is not in the input", fp)
			}
		}
	})
}

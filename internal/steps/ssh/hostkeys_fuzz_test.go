package ssh

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// maxHostKeyErrLen bounds the message of a host key record error: the record is read from the store.
const maxHostKeyErrLen = 256

// fuzzKey is a fixed ed25519 public key in authorized_keys form, without a newline.
func fuzzKey(t testing.TB) (ssh.PublicKey, string) {
	t.Helper()
	k, err := ssh.NewPublicKey(ed25519.PublicKey(bytes.Repeat([]byte{7}, ed25519.PublicKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	return k, strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k)), "\n")
}

// FuzzHostKeysFromConsole checks what the console parser takes for a guest's host keys: only keys of a
// complete block, which survive the round trip through the host key record, and a block printed after
// anything at all (a console is whatever the guest and its kernel wrote) is still found whole.
func FuzzHostKeysFromConsole(f *testing.F) {
	want, line := fuzzKey(f)
	f.Add(firstBoot(f))
	f.Add(beginKeys + "\r\n[  12.3] cloud-init[573]: " + line + " root@x\r\n" + endKeys + "\r\n")
	f.Add(beginKeys + "\n" + line + "\n" + beginKeys + "\n" + endKeys + "\n" + endKeys)
	f.Add(beginKeys + "\nsk-ssh-ed25519@openssh.com AAAA\nssh-rsa " + strings.Repeat("A", 3000) + "\n" + endKeys + "\n")
	f.Add(keygenFingerprint + "\nSHA256:" + strings.Repeat("+", 43) + "\n" + beginFingerprints + "\n")
	block := "\n" + beginKeys + "\n" + line + "\n" + endKeys + "\n"
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := HostKeysFromConsole(s)
		if err == nil {
			if !strings.Contains(s, beginKeys) || !strings.Contains(s, endKeys) {
				t.Fatalf("%d keys without a complete block", len(keys))
			}
			back, err := ParseHostKeys(MarshalHostKeys(keys))
			if err != nil || len(back) != len(keys) {
				t.Fatalf("record of %d console keys reads back as %d, %v", len(keys), len(back), err)
			}
			c := ParseConsole(s)
			for i, k := range keys {
				if !strings.Contains(s, k.Type()) || !keysEqual(k, back[i]) || !c.Allows(k) {
					t.Fatalf("key %d (%s) does not round-trip", i, k.Type())
				}
			}
			if len(PinKeys(keys...).Algorithms()) == 0 {
				t.Fatalf("no algorithms for %d keys", len(keys))
			}
		}
		for _, fp := range ParseConsole(s).Fingerprints {
			if !fingerprintRE.MatchString(fp) || len(fp) != len("SHA256:")+43 {
				t.Fatalf("fingerprint %q", fp)
			}
		}
		// The block printed last wins, whatever came before it.
		keys, err = HostKeysFromConsole(s + block)
		if err != nil || len(keys) != 1 || !keysEqual(keys[0], want) {
			t.Fatalf("a complete block after the input: %d keys, %v", len(keys), err)
		}
	})
}

// TestConsoleLongLine is the regression test of what FuzzHostKeysFromConsole found: a line longer than the
// parser's line scanner could hold (1 MiB) ended the parse, and the keys printed after it were never seen.
// It is a test rather than a seed so that the fuzzer does not mutate megabytes on every run.
func TestConsoleLongLine(t *testing.T) {
	want, line := fuzzKey(t)
	keys, err := HostKeysFromConsole(strings.Repeat("x", 2<<20) + "\n" + beginKeys + "\n" + line + "\n" + endKeys + "\n")
	if err != nil || len(keys) != 1 || !keysEqual(keys[0], want) {
		t.Fatalf("keys after a long line: %d keys, %v", len(keys), err)
	}
}

// FuzzParseHostKeys checks the reader of the host key record a resumed build pins: every line of an
// accepted record is a key, the keys survive MarshalHostKeys, and errors do not repeat the record.
func FuzzParseHostKeys(f *testing.F) {
	_, line := fuzzKey(f)
	f.Add([]byte(line + "\n"))
	f.Add([]byte(line + "\r\n\n" + line + " comment\n"))
	f.Add([]byte("garbage\n" + line + "\n"))
	f.Add([]byte("# comment\n" + line + "\n"))
	f.Add([]byte(`command="sh" ` + line + "\n"))
	f.Add([]byte(line + "\n" + strings.Repeat("z", 4000)))
	f.Add([]byte("\n \t\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseHostKeys(b)
		if err != nil {
			if len(err.Error()) > maxHostKeyErrLen {
				t.Fatalf("error of %d bytes: %.100s...", len(err.Error()), err)
			}
			return
		}
		lines := 0
		for _, l := range bytes.Split(b, []byte("\n")) {
			if len(bytes.TrimSpace(l)) > 0 {
				lines++
			}
		}
		if len(keys) == 0 || len(keys) != lines {
			t.Fatalf("%d keys from %d lines", len(keys), lines)
		}
		back, err := ParseHostKeys(MarshalHostKeys(keys))
		if err != nil || len(back) != len(keys) {
			t.Fatalf("%d keys read back as %d, %v", len(keys), len(back), err)
		}
		for i := range keys {
			if !keysEqual(keys[i], back[i]) {
				t.Fatalf("key %d differs after the round trip", i)
			}
		}
	})
}

package ssh

import (
	"bytes"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestKeyRoundTrip(t *testing.T) {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	line := k.AuthorizedKey()
	fields := strings.Fields(line)
	if strings.Contains(line, "\n") || len(fields) != 3 || fields[0] != "ssh-ed25519" || fields[2] != "imgform-build" {
		t.Errorf("AuthorizedKey = %q, want one line \"ssh-ed25519 <key> imgform-build\"", line)
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil || comment != "imgform-build" || !keysEqual(pub, k.PublicKey()) {
		t.Errorf("authorized_keys line does not parse back: %v, %q", err, comment)
	}
	pem := k.PrivatePEM()
	if !bytes.HasPrefix(pem, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
		t.Errorf("PrivatePEM is not in OpenSSH format: %.40q", pem)
	}
	pem[0] ^= 0xff // PrivatePEM must hand out a copy
	k2, err := ParseKey(k.PrivatePEM())
	if err != nil {
		t.Fatal(err)
	}
	if !keysEqual(k2.PublicKey(), k.PublicKey()) || k2.AuthorizedKey() != line {
		t.Error("ParseKey(PrivatePEM()) gives another key")
	}
	other, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if other.AuthorizedKey() == line {
		t.Error("two generated keys are equal")
	}
}

func TestParseKeyRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":       "",
		"public key":  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHMewNi7JmH/hJJoQU5BROL/nzSO1u5XPwdLOrW82qXf x",
		"garbage pem": "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseKey([]byte(in)); err == nil {
				t.Error("ParseKey succeeded")
			}
		})
	}
}

package smoke

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// TestUser is the account the test seed creates for the throwaway key. It exists only in instances booted
// with that seed, never in the image.
const TestUser = "imgform-test"

// UserData is the user-data of the test instance: what a deployment gives, the image's default user, plus
// the test user with the throwaway key. Nothing else: the image must work with what any deployment sends.
func UserData(authorizedKey string) []byte {
	return []byte(fmt.Sprintf(`#cloud-config
users:
  - default
  - name: %s
    gecos: imgform smoke test (this instance only)
    shell: /bin/sh
    lock_passwd: true
    sudo: ALL=(ALL) NOPASSWD:ALL
    ssh_authorized_keys:
      - %q
`, TestUser, strings.TrimSpace(authorizedKey)))
}

// NewInstanceID returns a random instance-id, so cloud-init sees an instance it has never seen.
func NewInstanceID() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "imgform-test-" + hex.EncodeToString(b), nil
}

// NewMAC returns a random locally administered unicast MAC address. The build VM has QEMU's default MAC;
// a test instance with the same one would hide configuration bound to the build's MAC address (netplan
// files cloud-init wrote on the build boot match it).
func NewMAC() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	b[0] = b[0]&0xfc | 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]), nil
}

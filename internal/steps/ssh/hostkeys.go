package ssh

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ErrHostKeyPending means the guest showed a host key the console has not announced yet, while the
// announcement may still come. Dial retries on it.
var ErrHostKeyPending = errors.New("ssh: host key not announced on the serial console yet")

// HostKeyMismatchError means the guest showed a host key that is not one of the pinned or announced keys.
// Dial gives up at once: retrying cannot make a wrong key right.
type HostKeyMismatchError struct {
	Host        string
	Fingerprint string   // of the key the server showed
	Want        []string // fingerprints that would have been accepted
}

func (e *HostKeyMismatchError) Error() string {
	want := "none"
	if len(e.Want) > 0 {
		want = strings.Join(e.Want, ", ")
	}
	return fmt.Sprintf("ssh: host key mismatch for %s: server showed %s, expected one of %s", e.Host, e.Fingerprint, want)
}

// HostKeys decides which host keys to trust, and remembers which one the guest actually used.
//
// Two sources exist and neither is trust-on-first-use:
//
//   - PinConsole, for the boot where cloud-init makes the host keys: the keys and fingerprints the guest
//     printed on its serial console (see ConsoleKeys for the order they appear in).
//   - PinKeys, for a build that resumes from a cached layer: cloud-init does not print the keys again on a
//     later boot of the same instance, so the engine stores the keys the first boot used (Accepted, in
//     MarshalHostKeys form) with the layer chain, next to the build key, and pins those. A layer chain
//     without that record cannot be resumed safely; the engine should rebuild it rather than trust the
//     first key it sees.
type HostKeys struct {
	consolePath string
	pinned      []ssh.PublicKey

	mu       sync.Mutex
	accepted []ssh.PublicKey
}

// PinKeys trusts exactly the given keys.
func PinKeys(keys ...ssh.PublicKey) *HostKeys {
	return &HostKeys{pinned: keys}
}

// PinConsole trusts the host keys the guest announces on the serial console that QEMU writes to
// serialLogPath. The file is read again on every handshake, so keys announced later are seen.
func PinConsole(serialLogPath string) *HostKeys {
	return &HostKeys{consolePath: serialLogPath}
}

// Callback returns the ssh.HostKeyCallback that enforces the pin. Before the console has announced a key
// it returns ErrHostKeyPending; for a key that cannot become valid any more, a *HostKeyMismatchError.
func (h *HostKeys) Callback() ssh.HostKeyCallback {
	return func(hostname string, _ net.Addr, key ssh.PublicKey) error {
		ok, final, want, err := h.check(key)
		if err != nil {
			return err
		}
		if ok {
			h.remember(key)
			return nil
		}
		if !final {
			return fmt.Errorf("%w (%s showed %s)", ErrHostKeyPending, hostname, ssh.FingerprintSHA256(key))
		}
		return &HostKeyMismatchError{Host: hostname, Fingerprint: ssh.FingerprintSHA256(key), Want: want}
	}
}

// check reports whether key is trusted, whether that answer is final, and what would have been trusted.
func (h *HostKeys) check(key ssh.PublicKey) (ok, final bool, want []string, err error) {
	if h.consolePath == "" {
		for _, k := range h.pinned {
			if keysEqual(k, key) {
				return true, true, nil, nil
			}
			want = append(want, ssh.FingerprintSHA256(k))
		}
		return false, true, want, nil
	}
	b, err := os.ReadFile(h.consolePath)
	if err != nil {
		return false, false, nil, fmt.Errorf("ssh: read serial console for host keys: %w", err)
	}
	c := ParseConsole(string(b))
	if c.Allows(key) {
		return true, true, nil, nil
	}
	want = append(want, c.Fingerprints...)
	for _, k := range c.Keys {
		want = appendUnique(want, ssh.FingerprintSHA256(k))
	}
	return false, c.Complete, want, nil
}

func (h *HostKeys) remember(key ssh.PublicKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range h.accepted {
		if keysEqual(k, key) {
			return
		}
	}
	h.accepted = append(h.accepted, key)
}

// Accepted returns the host keys that passed the check so far, for the engine to record with the layer.
func (h *HostKeys) Accepted() []ssh.PublicKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]ssh.PublicKey(nil), h.accepted...)
}

// Algorithms returns the host key algorithms to offer so that the server shows a key of a pinned type, or
// nil (x/crypto's defaults) when keys come from the console and any announced type will do.
func (h *HostKeys) Algorithms() []string {
	var algos []string
	for _, k := range h.pinned {
		switch k.Type() {
		case ssh.KeyAlgoRSA:
			// An RSA key signs with SHA-2 today; ssh-rsa (SHA-1) only as the last resort.
			algos = append(algos, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			algos = append(algos, k.Type())
		}
	}
	return algos
}

// MarshalHostKeys writes keys one per line in authorized_keys form, the record a resumed build pins.
func MarshalHostKeys(keys []ssh.PublicKey) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		b.Write(ssh.MarshalAuthorizedKey(k))
	}
	return b.Bytes()
}

// ParseHostKeys reads what MarshalHostKeys wrote. An empty record is an error: pinning nothing would lock
// the build out, and accepting anything is not an option. A line that is not a key is an error too, where
// ssh's authorized_keys reader would skip it (and with it a key cut short).
func ParseHostKeys(b []byte) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		// ssh's errors quote the line's key type, whatever its length: a damaged line gets its number only.
		k, _, options, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil || len(options) > 0 {
			return nil, fmt.Errorf("ssh: host key record: line %d is not a public key in authorized_keys form", i+1)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("ssh: host key record is empty")
	}
	return keys, nil
}

// KnownHosts is a known_hosts file for an ssh client that pins keys for host ("[127.0.0.1]:2222" for a
// port other than 22).
func KnownHosts(host string, keys []ssh.PublicKey) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(knownhosts.Line([]string{host}, k))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

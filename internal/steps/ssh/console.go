package ssh

import (
	"errors"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Markers cloud-init's keys-to-console module prints around the host keys and their fingerprints.
const (
	beginKeys         = "-----BEGIN SSH HOST KEY KEYS-----"
	endKeys           = "-----END SSH HOST KEY KEYS-----"
	beginFingerprints = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
	endFingerprints   = "-----END SSH HOST KEY FINGERPRINTS-----"
	// keygenFingerprint is what ssh-keygen prints, through cloud-init's output, before the fingerprint of a
	// host key it has just made.
	keygenFingerprint = "The key fingerprint is:"
)

var (
	// keyRE finds "type base64" anywhere in a line: on the serial console a line may carry a kernel time
	// stamp or a "cloud-init[123]: " prefix in front.
	keyRE = regexp.MustCompile(`\b((?:ssh-(?:ed25519|rsa|dss)|ecdsa-sha2-nistp(?:256|384|521)|sk-[a-z0-9.@-]+)) +([A-Za-z0-9+/]+={0,3})`)
	// fingerprintRE is an OpenSSH SHA256 fingerprint: 32 bytes in unpadded base64.
	fingerprintRE = regexp.MustCompile(`SHA256:[A-Za-z0-9+/]{43}`)
)

// ErrNoHostKeys means the console shows no complete host key block (yet).
var ErrNoHostKeys = errors.New("ssh: the serial console shows no complete SSH HOST KEY KEYS block")

// ConsoleKeys is what a guest announced about its SSH host keys on its serial console.
//
// On a Debian 12 cloud image with cloud-init 22.4 the first boot prints, in this order: the SHA256
// fingerprint of each host key as ssh-keygen makes it (cloud-init's init stage, before sshd starts), then,
// at the very end of cloud-init's final stage, the FINGERPRINTS and KEYS blocks of keys-to-console. sshd
// accepts logins between the two, often minutes before the blocks appear. Later boots of the same instance
// print nothing: keys-to-console runs once per instance and no key is made again.
type ConsoleKeys struct {
	// Keys are the public keys of the last complete KEYS block.
	Keys []ssh.PublicKey
	// Fingerprints are the SHA256 fingerprints from ssh-keygen's output and the FINGERPRINTS blocks.
	Fingerprints []string
	// Complete says a KEYS block was printed: cloud-init is done with host keys and the set will not grow.
	Complete bool
}

// Allows reports whether key is one the console announced, by its full value or its SHA256 fingerprint.
func (c ConsoleKeys) Allows(key ssh.PublicKey) bool {
	for _, k := range c.Keys {
		if keysEqual(k, key) {
			return true
		}
	}
	fp := ssh.FingerprintSHA256(key)
	for _, f := range c.Fingerprints {
		if f == fp {
			return true
		}
	}
	return false
}

// ParseConsole reads the host key announcements out of serial console text. It never fails: a garbled
// line (the kernel can interleave its own messages) is skipped, and what is missing shows as Complete false
// or fewer keys.
func ParseConsole(text string) ConsoleKeys {
	var (
		out                        ConsoleKeys
		inKeys, inFPs, afterKeygen bool
		block                      []ssh.PublicKey
	)
	// No line scanner: one with a bounded buffer stops at the first longer line, and a guest could hide
	// the keys behind one. The text is in memory already and the regexps take linear time.
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.Contains(line, beginKeys):
			inKeys, block = true, nil
			continue
		case strings.Contains(line, endKeys):
			if inKeys {
				// The last complete block wins: it describes the keys sshd uses now.
				out.Keys, out.Complete = block, true
			}
			inKeys = false
			continue
		case strings.Contains(line, beginFingerprints):
			inFPs = true
			continue
		case strings.Contains(line, endFingerprints):
			inFPs = false
			continue
		case strings.Contains(line, keygenFingerprint):
			afterKeygen = true
			continue
		}
		switch {
		case inKeys:
			if k := parseKeyLine(line); k != nil {
				block = append(block, k)
			}
		case inFPs, afterKeygen:
			if fp := fingerprintRE.FindString(line); fp != "" {
				out.Fingerprints = appendUnique(out.Fingerprints, fp)
			}
			afterKeygen = false
		}
	}
	return out
}

// HostKeysFromConsole returns the host keys of the last complete SSH HOST KEY KEYS block in the serial
// console text serialLog (the content, not a path), or ErrNoHostKeys.
func HostKeysFromConsole(serialLog string) ([]ssh.PublicKey, error) {
	c := ParseConsole(serialLog)
	if !c.Complete || len(c.Keys) == 0 {
		return nil, ErrNoHostKeys
	}
	return c.Keys, nil
}

// parseKeyLine returns the public key on a line of the KEYS block, or nil.
func parseKeyLine(line string) ssh.PublicKey {
	m := keyRE.FindStringSubmatch(line)
	if m == nil {
		return nil
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(m[1] + " " + m[2]))
	if err != nil || k.Type() != m[1] {
		return nil
	}
	return k
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func keysEqual(a, b ssh.PublicKey) bool {
	return a.Type() == b.Type() && string(a.Marshal()) == string(b.Marshal())
}

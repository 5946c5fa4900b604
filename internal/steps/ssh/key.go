package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

// KeyComment is the comment of the build key's public line, so an admin who finds a leftover key in an
// image knows where it came from (cleanup removes it).
const KeyComment = "imgform-build"

// Key is the ephemeral key imgform logs in with.
type Key struct {
	signer ssh.Signer
	pem    []byte
}

// GenerateKey makes a new ed25519 key. ed25519 because it is small, fast to verify under TCG emulation and
// accepted by every OpenSSH a cloud image ships.
func GenerateKey() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ssh: generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, KeyComment)
	if err != nil {
		return nil, fmt.Errorf("ssh: encode private key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ssh: signer: %w", err)
	}
	return &Key{signer: signer, pem: pem.EncodeToMemory(block)}, nil
}

// ParseKey reads a private key in the form PrivatePEM writes (any unencrypted key x/crypto/ssh reads works).
func ParseKey(pemBytes []byte) (*Key, error) {
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("ssh: parse private key: %w", err)
	}
	return &Key{signer: signer, pem: append([]byte(nil), pemBytes...)}, nil
}

// AuthorizedKey returns the public key as one authorized_keys line with the comment "imgform-build",
// without a trailing newline, ready for cloud-init's ssh_authorized_keys.
func (k *Key) AuthorizedKey() string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k.signer.PublicKey())), "\n")
	return line + " " + KeyComment
}

// PrivatePEM returns the private key in OpenSSH format. Store it with mode 0600, as ssh refuses a key that
// others can read.
func (k *Key) PrivatePEM() []byte {
	return append([]byte(nil), k.pem...)
}

// PublicKey returns the public half.
func (k *Key) PublicKey() ssh.PublicKey { return k.signer.PublicKey() }

// Signer returns the key as an ssh.Signer, for callers that build their own ssh.ClientConfig.
func (k *Key) Signer() ssh.Signer { return k.signer }

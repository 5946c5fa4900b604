package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// ReadKeyFile reads a key written by WriteFile. It refuses a file that others can read: ssh would too, and
// such a key may have been seen by someone else.
func ReadKeyFile(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ssh: key file %s has mode %04o, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ssh: %w", err)
	}
	return ParseKey(b)
}

// AuthorizedKey returns the public key as one authorized_keys line with the comment "imgform-build",
// without a trailing newline, ready for cloud-init's ssh_authorized_keys.
func (k *Key) AuthorizedKey() string {
	line := strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(k.signer.PublicKey())), "\n")
	return line + " " + KeyComment
}

// PrivatePEM returns the private key in OpenSSH format. Store it with mode 0600 (WriteFile does).
func (k *Key) PrivatePEM() []byte {
	return append([]byte(nil), k.pem...)
}

// PublicKey returns the public half.
func (k *Key) PublicKey() ssh.PublicKey { return k.signer.PublicKey() }

// Signer returns the key as an ssh.Signer, for callers that build their own ssh.ClientConfig.
func (k *Key) Signer() ssh.Signer { return k.signer }

// WriteFile stores the private key at path with mode 0600, atomically: a temporary file in the same folder,
// synced, renamed into place, and the folder synced.
func (k *Key) WriteFile(path string) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".key-*.tmp")
	if err != nil {
		return fmt.Errorf("ssh: write key: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name()) // best effort: the error that matters is already in err
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return errors.Join(fmt.Errorf("ssh: write key: %w", err), f.Close())
	}
	if _, err := f.Write(k.pem); err != nil {
		return errors.Join(fmt.Errorf("ssh: write key: %w", err), f.Close())
	}
	if err := f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("ssh: write key: %w", err), f.Close())
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ssh: write key: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("ssh: write key: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("ssh: sync %s: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		return errors.Join(fmt.Errorf("ssh: sync %s: %w", dir, err), d.Close())
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("ssh: sync %s: %w", dir, err)
	}
	return nil
}

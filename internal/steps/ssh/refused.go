package ssh

import (
	"context"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// TryLogin makes one login attempt as user with key, with no retries: nil when the login works, else the
// error, which LoginRefused tells apart from a network problem. For checks that a key no longer works.
func TryLogin(ctx context.Context, addr, user string, key *Key, hostKeyCallback ssh.HostKeyCallback) error {
	c := &Client{addr: addr, opts: dialOptions{attemptTimeout: time.Minute}, config: &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key.Signer())}, HostKeyCallback: hostKeyCallback,
		Timeout: time.Minute,
	}}
	conn, err := c.dialOnce(ctx)
	if err != nil {
		return err
	}
	return conn.Close()
}

// LoginRefused tells whether err is the server refusing every offered key (as opposed to a failed
// connection or handshake).
func LoginRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}

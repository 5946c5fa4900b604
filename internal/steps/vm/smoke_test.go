package vm

import (
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// The ssh-host-keys check fails on any key of the instance that is one of the build's, wherever it is in
// either list (the handshake's key first, then the key files), and passes when none is.
func TestSharedKey(t *testing.T) {
	keys := make([]gossh.PublicKey, 4)
	for i := range keys {
		k, err := ssh.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		// Through the authorized_keys form, as the record and the key files hold them.
		parsed, err := ssh.ParseHostKeys([]byte(k.AuthorizedKey() + "\n"))
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = parsed[0]
	}
	build := keys[:2]
	if k := sharedKey(build, keys[2:]); k != nil {
		t.Errorf("new keys reported as the build's: %s", gossh.FingerprintSHA256(k))
	}
	if k := sharedKey(build, []gossh.PublicKey{keys[2], keys[3], keys[1]}); k == nil || gossh.FingerprintSHA256(k) != gossh.FingerprintSHA256(keys[1]) {
		t.Errorf("a kept build key among the key files was not found: %v", k)
	}
	if k := sharedKey(build, nil); k != nil {
		t.Error("no instance keys reported a shared key")
	}
}

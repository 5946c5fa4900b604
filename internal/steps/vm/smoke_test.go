package vm

import (
	"strings"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// dssLine is an ssh-dss host key as cloud-init writes it on Debian 12: golang.org/x/crypto/ssh no longer
// parses it, and the check must read it anyway (it failed every real instance when it parsed the files).
const dssLine = "ssh-dss AAAAB3NzaC1kc3MAAACBAOZXCG59z7Dmdbf5LQhyqDWBAIRzxAvLJKMrP+uj7U7HqsPfozduFT1QdfXHT3e3aXFXG8SbNhbWyB2eWqpk9O41hWinG91c97/2PaYcFz5maVP8EBANzL7p0Cny7u42JUz8ICSlKirmXBKDPuvRK1jiVIhTbNLsTx8EJHjBbEnRAAAAFQCzXeJvYHJUOnQEypMx8NSsHPrYLwAAAIAOasdQR7mjphk0oYOqpx2G9vWYFP3R1b5BYfCOwDyKaW5slNReouImNVOqOs9/XuGTjVUJIRAzFOeAOZlEU98KQ5WHI/thxm7SzlCfjByIa17zrvzmYcyiWmTRZ4iHwuOs4apRa0fBn8pnr5dSqwk9Hg4Li/wSnjQ+q/z+TACi7wAAAIBcPoL69WSrWfWCfd7uujlr+OvZfmqI6WnrkPRnkTlE6NPZLM3XxH7z67wt7BL/GdzSFvkoC7Jkcc+e2GYJdy434AzMb7BzzogonD5H2d0pz2JCneUdX+hIw0/wDuG97403Utu/h8wK6XJx55iPLDKuVWIXPnWeXZww7FV5Xczr1Q== root@imgform-test"

// The ssh-host-keys check reads every public key file of the instance, whatever its key type, and finds a
// build key among them by its bytes.
func TestHostKeyFilesAgainstTheBuild(t *testing.T) {
	var lines []string
	var keys []gossh.PublicKey
	for range 3 {
		k, err := ssh.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSpace(k.AuthorizedKey())+" root@host")
		keys = append(keys, k.PublicKey())
	}
	build := keys[:1]
	files, err := keyBlobs([]byte(dssLine + "\n" + lines[1] + "\n\n" + lines[2] + "\n"))
	if err != nil || len(files) != 3 || files[0].typ != "ssh-dss" {
		t.Fatalf("keyBlobs: %+v, %v", files, err)
	}
	for _, f := range files {
		if shared(build, f.typ, f.blob) {
			t.Errorf("a new %s key taken for the build's", f.typ)
		}
	}
	files, err = keyBlobs([]byte(dssLine + "\n" + lines[0] + "\n"))
	if err != nil || len(files) != 2 || !shared(build, files[1].typ, files[1].blob) {
		t.Errorf("the build's key among the files was not found: %+v, %v", files, err)
	}
	if d := sharedDetail(files[1].typ, files[1].blob); !strings.Contains(d, gossh.FingerprintSHA256(keys[0])) {
		t.Errorf("the detail %q does not name the key as ssh-keygen -l would (%s)", d, gossh.FingerprintSHA256(keys[0]))
	}
	for _, bad := range []string{"", "\n\n", "ssh-ed25519\n", "ssh-ed25519 !!notbase64 c\n"} {
		if _, err := keyBlobs([]byte(bad)); err == nil {
			t.Errorf("keyBlobs(%q): no error", bad)
		}
	}
}

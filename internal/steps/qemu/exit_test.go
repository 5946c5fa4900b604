package qemu

import (
	"os/exec"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// TestExitErr: a message about a QEMU that exited too early names its exit status, also a clean one,
// never "<nil>".
func TestExitErr(t *testing.T) {
	for name, tc := range map[string]struct {
		argv []string
		want string
	}{
		"clean exit": {[]string{"true"}, "exit status 0"},
		"failure":    {[]string{"sh", "-c", "exit 3"}, "exit status 3"},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := startProcess(exec.Command(tc.argv[0], tc.argv[1:]...))
			if err != nil {
				t.Fatal(err)
			}
			<-p.exited
			if got := p.exitErr(); got == nil || got.Error() != tc.want {
				t.Errorf("exitErr() = %v, want %q", got, tc.want)
			}
			if got := probeExited(p, fsutil.NewTailBuffer(64)); strings.Contains(got, "<nil>") {
				t.Errorf("probeExited = %q", got)
			}
		})
	}
}

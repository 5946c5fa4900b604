package ssh_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/steps/qemu/qemutest"
)

// One guest serves all guest tests of this package, booted by TestMain before the other tests run because
// a TCG boot costs minutes. Its runcmd fails only once /etc/imgform-test-fail exists, so the first boot
// finishes cleanly and TestCloudInitError, which runs last, can make cloud-init's final stage fail for real.
var (
	guestCtx    context.Context
	guestCancel context.CancelFunc
	shared      = &fixture{cloudConfig: "runcmd:\n  - [sh, -c, 'if [ -e " + failFlag + " ]; then echo imgform-runcmd-marker; exit 3; fi']\n"}
)

// failFlag makes the guest's runcmd fail.
const failFlag = "/etc/imgform-test-fail"

// guestBudget bounds everything the guest tests do; the VM dies with it.
const guestBudget = 15 * time.Minute

type fixture struct {
	cloudConfig string
	once        sync.Once
	ready       chan struct{}
	guest       *qemutest.Guest
	err         error
	dir         string
	start       time.Time
}

func TestMain(m *testing.M) {
	flag.Parse()
	guestCtx, guestCancel = context.WithTimeout(context.Background(), qemutest.Budget(guestBudget))
	shared.ready = make(chan struct{})
	if wantGuest() {
		go shared.boot()
	}
	code := m.Run()
	guestCancel()
	shared.guest.Close()
	if shared.dir != "" {
		if err := os.RemoveAll(shared.dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// wantGuest reports whether this run includes a guest test, so that "-run TestRun" boots nothing.
func wantGuest() bool {
	if testing.Short() {
		return false
	}
	run := flag.Lookup("test.run").Value.String()
	if run == "" {
		return true
	}
	re, err := regexp.Compile(strings.Split(run, "/")[0])
	return err == nil && (re.MatchString("TestGuest") || re.MatchString("TestCloudInitError"))
}

func (f *fixture) boot() {
	f.once.Do(func() {
		defer close(f.ready)
		f.start = time.Now()
		if f.dir, f.err = os.MkdirTemp("", "imgform-ssh-guest-"); f.err != nil {
			return
		}
		f.guest, f.err = qemutest.Boot(guestCtx, qemutest.Options{Dir: f.dir, CloudConfig: f.cloudConfig})
	})
}

// get returns the booting guest, starting it if TestMain did not.
func (f *fixture) get(t *testing.T) *qemutest.Guest {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM under TCG for minutes; not with -short")
	}
	go f.boot()
	<-f.ready
	if f.err != nil {
		t.Fatalf("boot the test guest: %v", f.err)
	}
	return f.guest
}

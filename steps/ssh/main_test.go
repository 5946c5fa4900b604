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

	"gitlab.com/imgform/imgform/steps/qemu/qemutest"
)

// Two guests serve all guest tests of this package, booted in parallel by TestMain because a TCG boot
// costs minutes: "good" finishes cloud-init cleanly, "bad" has a runcmd that fails.
var (
	guestCtx    context.Context
	guestCancel context.CancelFunc
	good        = &fixture{name: "good"}
	bad         = &fixture{name: "bad", cloudConfig: "runcmd:\n  - [sh, -c, 'echo imgform-runcmd-marker; exit 3']\n"}
)

// guestBudget bounds everything the guest tests do; the VMs die with it.
const guestBudget = 15 * time.Minute

type fixture struct {
	name        string
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
	guestCtx, guestCancel = context.WithTimeout(context.Background(), guestBudget)
	for _, f := range []*fixture{good, bad} {
		f.ready = make(chan struct{})
		if wants(f) {
			go f.boot()
		}
	}
	code := m.Run()
	guestCancel()
	for _, f := range []*fixture{good, bad} {
		f.guest.Close()
		if f.dir != "" {
			if err := os.RemoveAll(f.dir); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
	}
	os.Exit(code)
}

// wants reports whether this run includes a test that needs the fixture, so that "-run TestRun" boots
// nothing.
func wants(f *fixture) bool {
	if testing.Short() {
		return false
	}
	test := map[string]string{"good": "TestGuest", "bad": "TestCloudInitError"}[f.name]
	run := flag.Lookup("test.run").Value.String()
	if run == "" {
		return true
	}
	re, err := regexp.Compile(strings.Split(run, "/")[0])
	return err == nil && re.MatchString(test)
}

func (f *fixture) boot() {
	f.once.Do(func() {
		defer close(f.ready)
		f.start = time.Now()
		if f.dir, f.err = os.MkdirTemp("", "imgform-ssh-"+f.name+"-"); f.err != nil {
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
		t.Fatalf("boot the %s test guest: %v", f.name, f.err)
	}
	return f.guest
}

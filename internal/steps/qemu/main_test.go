package qemu_test

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

// The guest tests share one booted VM: a TCG boot costs minutes on a small host. TestMain starts it before
// the other tests run, so the boot overlaps with them; TestGuest waits for it.
var shared struct {
	once   sync.Once
	ready  chan struct{}
	guest  *qemutest.Guest
	err    error
	dir    string
	start  time.Time
	ctx    context.Context
	cancel context.CancelFunc
}

// guestBudget bounds everything the guest tests do; the VMs die with it.
const guestBudget = 15 * time.Minute

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	flag.Parse()
	shared.ready = make(chan struct{})
	shared.ctx, shared.cancel = context.WithTimeout(context.Background(), qemutest.Budget(guestBudget))
	if wantGuest() {
		go bootShared()
	}
	code := m.Run()
	shared.cancel()
	if shared.guest != nil {
		shared.guest.Close()
	}
	if shared.dir != "" {
		if err := os.RemoveAll(shared.dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// wantGuest reports whether this run includes TestGuest, so that "go test -run TestCommand" boots nothing.
func wantGuest() bool {
	if testing.Short() {
		return false
	}
	run := flag.Lookup("test.run").Value.String()
	if run == "" {
		return true
	}
	re, err := regexp.Compile(strings.Split(run, "/")[0])
	return err == nil && re.MatchString("TestGuest")
}

func bootShared() {
	shared.once.Do(func() {
		defer close(shared.ready)
		shared.start = time.Now()
		if shared.dir, shared.err = os.MkdirTemp("", "imgform-qemu-guest-"); shared.err != nil {
			return
		}
		shared.guest, shared.err = qemutest.Boot(shared.ctx, qemutest.Options{Dir: shared.dir})
	})
}

// sharedGuest returns the booting guest, starting it if TestMain did not.
func sharedGuest(t *testing.T) *qemutest.Guest {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM under TCG for minutes; not with -short")
	}
	go bootShared()
	<-shared.ready
	if shared.err != nil {
		t.Fatalf("boot the test guest: %v", shared.err)
	}
	return shared.guest
}

package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lockInBackground takes the key's lock in a goroutine, sending its events and then its result.
func lockInBackground(st *Store, ctx context.Context, key Key) (<-chan LockEvent, <-chan error, <-chan *Lock) {
	events := make(chan LockEvent, 16)
	errc := make(chan error, 1)
	locks := make(chan *Lock, 1)
	go func() {
		l, err := st.LockKey(ctx, key, LockOptions{Purpose: "apply of image waiter", OnEvent: func(e LockEvent) { events <- e }})
		errc <- err
		locks <- l
	}()
	return events, errc, locks
}

func TestStaleLockTakeover(t *testing.T) {
	t.Run("waiter sees the holder, then takes over after it is killed", func(t *testing.T) {
		st, _ := openStore(t)
		key := testKey("contended")
		h := startHelper(t, "lock", st.Dir(), key)
		h.expect(t, "locked")

		events, errc, locks := lockInBackground(st, context.Background(), key)
		e := <-events
		if e.Kind != LockWaiting || e.Holder == nil || e.Holder.PID != h.pid() {
			t.Fatalf("first event = %+v, want waiting for PID %d", e, h.pid())
		}
		want := fmt.Sprintf("waiting for lock on object %s held by PID %d on host ", key.Short(), h.pid())
		if !strings.HasPrefix(e.String(), want) || !strings.HasSuffix(e.String(), "(apply of image helper)") {
			t.Errorf("message = %q, want %q...(apply of image helper)", e.String(), want)
		}

		h.kill(t)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		e = <-events
		if e.Kind != LockTakenOver || e.Holder == nil || e.Holder.PID != h.pid() {
			t.Fatalf("event after the kill = %+v, want a takeover from PID %d", e, h.pid())
		}
		if want := fmt.Sprintf("taken over stale lock on object %s from PID %d", key.Short(), h.pid()); !strings.HasPrefix(e.String(), want) {
			t.Errorf("message = %q, want %q...", e.String(), want)
		}
		if err := (<-locks).Unlock(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("lock taken after the holder died", func(t *testing.T) {
		st, _ := openStore(t)
		key := testKey("abandoned")
		h := startHelper(t, "lock", st.Dir(), key)
		h.expect(t, "locked")
		h.kill(t)

		var events []LockEvent
		l, err := st.LockKey(context.Background(), key, LockOptions{OnEvent: func(e LockEvent) { events = append(events, e) }})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 1 || events[0].Kind != LockTakenOver || events[0].Holder.PID != h.pid() {
			t.Fatalf("events = %+v, want one takeover from PID %d", events, h.pid())
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("holder information of a dead process in the file", func(t *testing.T) {
		st, _ := openStore(t)
		key := testKey("leftover")
		dead := Holder{Host: "buildhost", PID: 4194000, Since: newFakeClock().Now(), Purpose: "apply of image old"}
		b, err := json.Marshal(dead)
		if err != nil {
			t.Fatal(err)
		}
		path := st.buildLockPath(key)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		var events []LockEvent
		l, err := st.LockKey(context.Background(), key, LockOptions{OnEvent: func(e LockEvent) { events = append(events, e) }})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 1 || events[0].Kind != LockTakenOver || *events[0].Holder != dead {
			t.Fatalf("events = %+v, want one takeover from %+v", events, dead)
		}
		want := "taken over stale lock on object " + key.Short() +
			" from PID 4194000 on host buildhost (held since 2026-11-02 10:00:00, apply of image old)"
		if events[0].String() != want {
			t.Errorf("message = %q\nwant      %q", events[0].String(), want)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCleanUnlockIsNoTakeover(t *testing.T) {
	st, clock := openStore(t)
	key := testKey("clean")
	l, err := st.LockKey(context.Background(), key, LockOptions{Purpose: "first"})
	if err != nil {
		t.Fatal(err)
	}
	h := readHolderAt(st.buildLockPath(key))
	if h == nil || h.PID != os.Getpid() || h.Purpose != "first" || !h.Since.Equal(clock.Now()) {
		t.Fatalf("holder while locked = %+v", h)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("second Unlock: %v", err)
	}
	if h := readHolderAt(st.buildLockPath(key)); h != nil {
		t.Errorf("holder after Unlock = %+v, want none", h)
	}
	var events []LockEvent
	l, err = st.LockKey(context.Background(), key, LockOptions{OnEvent: func(e LockEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 0 {
		t.Errorf("events = %+v, want none", events)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestLockWaitCancelled(t *testing.T) {
	st, _ := openStore(t)
	key := testKey("busy")
	held, err := st.LockKey(context.Background(), key, LockOptions{Purpose: "holder"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := held.Unlock(); err != nil {
			t.Error(err)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, errc, _ := lockInBackground(st, ctx, key)
	if e := <-events; e.Kind != LockWaiting || e.Holder == nil || e.Holder.Purpose != "holder" {
		t.Fatalf("event = %+v, want waiting for holder", e)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("LockKey = %v, want context.Canceled", err)
	}
}

func TestLockGoroutinesExclude(t *testing.T) {
	st, _ := openStore(t)
	key := testKey("mutex")
	first, err := st.LockKey(context.Background(), key, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	events, errc, locks := lockInBackground(st, context.Background(), key)
	<-events // the second goroutine waits
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := (<-locks).Unlock(); err != nil {
		t.Fatal(err)
	}
	// The goroutine has finished, so every event it reported is in the channel.
	for len(events) > 0 {
		if ev := <-events; ev.Kind == LockTakenOver {
			t.Errorf("a clean handover was reported as a takeover: %v", ev)
		}
	}
}

func TestLockRecord(t *testing.T) {
	st, _ := openStore(t)
	l, err := st.LockRecord(context.Background(), "/home/me/images", LockOptions{Purpose: "apply"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	_, err = st.LockRecord(ctx, "/home/me/images", LockOptions{OnEvent: func(e LockEvent) {
		if !strings.Contains(e.String(), "configuration /home/me/images held by PID") {
			t.Errorf("message = %q", e)
		}
		cancel()
	}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("second LockRecord = %v, want context.Canceled", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestLockEventString(t *testing.T) {
	since := time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)
	h := &Holder{Host: "ci-7", PID: 1234, Since: since, Purpose: "apply of image debian-12-base"}
	tests := map[string]struct {
		e    LockEvent
		want string
	}{
		"waiting": {LockEvent{Kind: LockWaiting, Name: "object 0123456789ab", Holder: h},
			"waiting for lock on object 0123456789ab held by PID 1234 on host ci-7 since 2026-11-02 09:30:00 (apply of image debian-12-base)"},
		"waiting unknown": {LockEvent{Kind: LockWaiting, Name: "object 0123456789ab"},
			"waiting for lock on object 0123456789ab"},
		"taken over": {LockEvent{Kind: LockTakenOver, Name: "cache maintenance", Holder: &Holder{Host: "h", PID: 7, Since: since}},
			"taken over stale lock on cache maintenance from PID 7 on host h (held since 2026-11-02 09:30:00)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := tc.e.String(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestLockFileReplaced: gc may unlink a lock file nobody holds; a locker must then lock the new file, not
// the unlinked one, or two holders could coexist.
func TestLockFileReplaced(t *testing.T) {
	st, _ := openStore(t)
	key := testKey("relinked")
	path := st.buildLockPath(key)
	a, err := st.LockKey(context.Background(), key, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Unlink the held file behind its holder's back and lock again: the new file is free, and the old
	// holder's lock must not matter. Then check the other way round: the new holder excludes newcomers.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	b, err := st.LockKey(context.Background(), key, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f, err := tryLockFile(path, lockEX)
	if err != nil || f != nil {
		t.Fatalf("tryLockFile on a held file = %v, %v; want busy", f, err)
	}
	if err := errors.Join(a.Unlock(), b.Unlock()); err != nil {
		t.Fatal(err)
	}
}

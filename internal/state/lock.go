package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxHolderBytes bounds how much of a lock file is read as holder information.
const maxHolderBytes = 4 << 10

// Holder describes the process holding an exclusive lock. It is written into the lock file while the lock
// is held and erased on a clean unlock, so holder information found in a lock nobody holds was left by a
// process that died.
type Holder struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Since   time.Time `json:"since"`
	Purpose string    `json:"purpose,omitempty"`
}

// String describes the holder for humans: "PID 1234 on host X since 2026-11-02 10:04:05 (apply of ...)".
func (h Holder) String() string {
	s := fmt.Sprintf("PID %d on host %s since %s", h.PID, h.Host, h.Since.Format(time.DateTime))
	if h.Purpose != "" {
		s += " (" + h.Purpose + ")"
	}
	return s
}

// LockEventKind tells what a [LockEvent] reports.
type LockEventKind int

const (
	// LockWaiting: the lock is held by someone else and the caller waits. Reported when waiting starts and
	// again whenever the holder changes.
	LockWaiting LockEventKind = iota + 1
	// LockTakenOver: the lock was free but its file still described a holder, which therefore died (or its
	// host rebooted) without unlocking. The caller now holds the lock.
	LockTakenOver
)

// LockEvent reports progress of taking a lock, for the CLI to show.
type LockEvent struct {
	Kind LockEventKind
	// Name says what the lock protects, such as "object 3fa9c2e81b0d".
	Name string
	// Holder is the current (LockWaiting) or dead (LockTakenOver) holder; nil when unknown.
	Holder *Holder
}

// String renders the event as a sentence for humans.
func (e LockEvent) String() string {
	switch e.Kind {
	case LockWaiting:
		if e.Holder == nil {
			return fmt.Sprintf("waiting for lock on %s", e.Name)
		}
		return fmt.Sprintf("waiting for lock on %s held by %s", e.Name, e.Holder)
	case LockTakenOver:
		if e.Holder == nil {
			return fmt.Sprintf("taken over stale lock on %s", e.Name)
		}
		return fmt.Sprintf("taken over stale lock on %s from PID %d on host %s (held since %s%s)", e.Name,
			e.Holder.PID, e.Holder.Host, e.Holder.Since.Format(time.DateTime), purposeSuffix(e.Holder.Purpose))
	}
	return fmt.Sprintf("lock event %d on %s", int(e.Kind), e.Name)
}

func purposeSuffix(p string) string {
	if p == "" {
		return ""
	}
	return ", " + p
}

// LockOptions says who takes a lock and where to report waiting.
type LockOptions struct {
	// Purpose is written into the lock for others to read, such as "apply of image debian-12-base".
	Purpose string
	// OnEvent, when set, is called (from the locking goroutine) while waiting and on a takeover.
	OnEvent func(LockEvent)
}

func (o LockOptions) emit(e LockEvent) {
	if o.OnEvent != nil {
		o.OnEvent(e)
	}
}

// Lock is a held exclusive lock. Release it with [Lock.Unlock]; if the process dies instead, the kernel
// releases it and the next taker reports a takeover.
type Lock struct {
	mu sync.Mutex
	f  *os.File
}

// Unlock erases the holder information and releases the lock. Unlocking twice is a no-op.
func (l *Lock) Unlock() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	// Erase first: holder information in a free lock means its holder died.
	return errors.Join(f.Truncate(0), f.Close())
}

// LockKey takes the exclusive lock that whoever produces the object under key holds, waiting (until ctx
// is done) while another goroutine or process holds it. After taking it, look the key up again: the
// previous holder has probably produced the object. [Store.GetOrBuild] does all of this.
func (s *Store) LockKey(ctx context.Context, key Key, opts LockOptions) (*Lock, error) {
	if key.IsZero() {
		return nil, errors.New("lock: zero key")
	}
	return s.lockExclusive(ctx, s.buildLockPath(key), "object "+key.Short(), opts)
}

// LockRecord takes an exclusive lock named after a configuration ID (see [Store.SaveRecord]), so that two
// applies of the same configuration run one after the other and the record reflects the last one.
func (s *Store) LockRecord(ctx context.Context, id string, opts LockOptions) (*Lock, error) {
	path := filepath.Join(s.locksDir(), "record-"+recordName(id)+".lock")
	return s.lockExclusive(ctx, path, "configuration "+id, opts)
}

// lockMaintenance serialises gc and verify runs, which would otherwise race to remove the same folders.
func (s *Store) lockMaintenance(ctx context.Context, purpose string, onEvent func(LockEvent)) (*Lock, error) {
	path := filepath.Join(s.locksDir(), "maintenance.lock")
	return s.lockExclusive(ctx, path, "cache maintenance", LockOptions{Purpose: purpose, OnEvent: onEvent})
}

func (s *Store) lockExclusive(ctx context.Context, path, name string, opts LockOptions) (*Lock, error) {
	f, err := s.acquire(ctx, path, name, unix.LOCK_EX, opts)
	if err != nil {
		return nil, err
	}
	if old := readHolder(f); old != nil {
		opts.emit(LockEvent{Kind: LockTakenOver, Name: name, Holder: old})
		s.logf("state: taken over stale lock on %s from %s", name, old)
	}
	me, err := json.Marshal(Holder{Host: s.host, PID: s.pid, Since: s.now(), Purpose: opts.Purpose})
	if err == nil {
		err = f.Truncate(0)
	}
	if err == nil {
		_, err = f.WriteAt(me, 0)
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lock %s: write holder: %w", name, err), f.Close())
	}
	return &Lock{f: f}, nil
}

// acquire takes a lock of kind how (unix.LOCK_SH or LOCK_EX) on the file at path, polling with a growing
// delay while it is busy. Polling, rather than a blocking flock, is what lets ctx interrupt the wait.
func (s *Store) acquire(ctx context.Context, path, name string, how int, opts LockOptions) (*os.File, error) {
	delay := s.pollMin
	var last *Holder
	waited := false
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		f, err := tryLockFile(path, how)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if f != nil {
			return f, nil
		}
		h := readHolderAt(path)
		if !waited || !sameHolder(h, last) {
			opts.emit(LockEvent{Kind: LockWaiting, Name: name, Holder: h})
			waited, last = true, h
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return nil, fmt.Errorf("wait for lock on %s: %w", name, err)
		}
		delay = min(2*delay, s.pollMax)
	}
}

// readHolder parses the holder information in an open lock file; nil when there is none or it is
// unreadable (a holder may be writing it right now).
func readHolder(f *os.File) *Holder {
	buf := make([]byte, maxHolderBytes)
	n, _ := f.ReadAt(buf, 0) // io.EOF is expected; a short or failed read just means "unknown"
	return parseHolder(buf[:n])
}

func readHolderAt(path string) *Holder {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	h := readHolder(f)
	if err := f.Close(); err != nil {
		return nil
	}
	return h
}

func parseHolder(b []byte) *Holder {
	if len(b) == 0 {
		return nil
	}
	var h Holder
	if err := json.Unmarshal(b, &h); err != nil || h.PID == 0 {
		return nil
	}
	return &h
}

func sameHolder(a, b *Holder) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Host == b.Host && a.PID == b.PID && a.Since.Equal(b.Since) && a.Purpose == b.Purpose
}

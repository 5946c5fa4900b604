package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeQEMU serves QMP on a unix socket the way QEMU does: a greeting, then one reply per command, with
// events sent in between. handle returns the lines to send for a command (events and the reply).
func fakeQEMU(t *testing.T, handle func(cmd string, id json.RawMessage) []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }() // the test's end, or the client's Close, ends it
		w := bufio.NewWriter(conn)
		fmt.Fprintln(w, `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`)
		if w.Flush() != nil {
			return
		}
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var req struct {
				Execute string          `json:"execute"`
				ID      json.RawMessage `json:"id"`
			}
			if json.Unmarshal(sc.Bytes(), &req) != nil {
				return
			}
			lines := []string{fmt.Sprintf(`{"return": {}, "id": %s}`, req.ID)}
			if req.Execute != "qmp_capabilities" {
				lines = handle(req.Execute, req.ID)
			}
			for _, line := range lines {
				if line == "HANGUP" {
					return
				}
				fmt.Fprintln(w, line)
			}
			if w.Flush() != nil {
				return
			}
		}
	}()
	return path
}

func TestQMP(t *testing.T) {
	path := fakeQEMU(t, func(cmd string, id json.RawMessage) []string {
		switch cmd {
		case "query-status":
			return []string{
				`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}`,
				fmt.Sprintf(`{"return": {"status": "running", "singlestep": false, "running": true}, "id": %s}`, id),
			}
		case "system_powerdown":
			return []string{
				fmt.Sprintf(`{"return": {}, "id": %s}`, id),
				`{"timestamp": {"seconds": 3, "microseconds": 4}, "event": "POWERDOWN"}`,
				`{"timestamp": {"seconds": 5, "microseconds": 6}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}`,
			}
		case "blockdev-add":
			return []string{fmt.Sprintf(`{"id": %s, "error": {"class": "GenericError", "desc": "Could not open '/x.qcow2': No such file or directory"}}`, id)}
		case "quit":
			return []string{"HANGUP"}
		}
		return []string{fmt.Sprintf(`{"id": %s, "error": {"class": "CommandNotFound", "desc": "The command %s has not been found"}}`, id, cmd)}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}

	// Commands from several goroutines: each gets its own reply.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := q.QueryStatus(ctx)
			if err != nil || !st.Running || st.Status != "running" {
				t.Errorf("query-status = %+v, %v", st, err)
			}
		}()
	}
	wg.Wait()

	var qerr *QMPError
	if err := q.BlockdevSnapshot(ctx, "disk0", Overlay{File: "/x.qcow2", NodeName: "n1"}); !errors.As(err, &qerr) || qerr.Class != "GenericError" {
		t.Errorf("error reply = %v, want a *QMPError of class GenericError", err)
	}
	if err := q.Execute(ctx, "no-such-command", nil, nil); !errors.As(err, &qerr) || qerr.Class != "CommandNotFound" {
		t.Errorf("unknown command = %v", err)
	}
	if err := q.SystemPowerdown(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	var shutdown ShutdownEvent
	for ev := range q.Events() {
		names = append(names, ev.Name)
		if s, ok := ev.Shutdown(); ok {
			shutdown = s
			break
		}
	}
	if len(names) != 10 || names[8] != "POWERDOWN" || names[9] != "SHUTDOWN" {
		t.Errorf("events %v, want 8 RESUME, POWERDOWN, SHUTDOWN", names)
	}
	if shutdown != (ShutdownEvent{Guest: true, Reason: "guest-shutdown"}) {
		t.Errorf("SHUTDOWN data %+v", shutdown)
	}
	// QEMU closes the socket on quit, possibly before replying.
	if err := q.Quit(ctx); err != nil {
		t.Errorf("quit: %v", err)
	}
	<-q.Done()
	if err := q.Execute(ctx, "query-status", nil, nil); !errors.Is(err, ErrQMPClosed) {
		t.Errorf("command after the connection ended = %v, want ErrQMPClosed", err)
	}
	if err := q.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestQMPContext(t *testing.T) {
	block := make(chan struct{})
	path := fakeQEMU(t, func(cmd string, id json.RawMessage) []string {
		<-block // never answers until the test ends
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if err := q.Execute(cctx, "query-status", nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Execute with a cancelled context = %v", err)
	}
	close(block)
	if err := q.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func TestDialQMPNoServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := DialQMP(ctx, filepath.Join(t.TempDir(), "none.sock")); err == nil {
		t.Fatal("DialQMP without a server succeeded")
	}
}

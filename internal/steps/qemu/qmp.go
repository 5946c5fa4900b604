package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"

	"gitlab.com/imgform/imgform/internal/debuglog"
)

// ErrQMPClosed means the QMP connection ended, normally because QEMU exited.
var ErrQMPClosed = errors.New("qmp: connection closed")

// QMPError is an error reply from QEMU.
type QMPError struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp: %s: %s: %s", e.Command, e.Class, e.Desc)
}

// Event is an asynchronous QMP event such as SHUTDOWN, POWERDOWN, STOP or RESUME.
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
}

// ShutdownEvent is the data of a SHUTDOWN event. Reason is for example "guest-shutdown" (the guest powered
// off, also after system_powerdown), "host-qmp-quit" (QMP quit) or "host-signal" (QEMU got SIGTERM or SIGINT).
type ShutdownEvent struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"`
}

// Shutdown decodes a SHUTDOWN event's data; ok is false for other events.
func (e Event) Shutdown() (ShutdownEvent, bool) {
	var s ShutdownEvent
	if e.Name != "SHUTDOWN" || json.Unmarshal(e.Data, &s) != nil {
		return ShutdownEvent{}, false
	}
	return s, true
}

// QMP is a client of QEMU's machine protocol on a unix socket. QEMU serves one client per socket at a
// time, so there should be one QMP per VM; its methods may be called from several goroutines. Replies are
// matched to commands by id, since events arrive in between.
type QMP struct {
	conn net.Conn

	writeMu sync.Mutex // one command on the wire at a time

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan message
	err     error // why the reader stopped

	events chan Event
	done   chan struct{}
}

// message is any line QEMU sends: a greeting, a reply or an event.
type message struct {
	QMP    json.RawMessage `json:"QMP,omitempty"`
	ID     string          `json:"id,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *QMPError       `json:"error,omitempty"`
	Event  string          `json:"event,omitempty"`
	raw    []byte
}

// eventBuffer is how many events may wait for the reader of Events; more are dropped rather than stall
// command replies. A VM sees a handful of events in its life.
const eventBuffer = 256

// DialQMP connects to the QMP socket at path, reads QEMU's greeting and leaves capabilities negotiation
// mode, all within ctx.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	q := &QMP{conn: conn, pending: map[string]chan message{}, events: make(chan Event, eventBuffer),
		done: make(chan struct{})}
	r := bufio.NewReaderSize(conn, 64*1024)
	// The greeting comes first, before any reply: read it here, then hand the stream to the reader.
	// Closing the socket is how ctx interrupts the read; the read's error then tells what happened.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	greeting, err := readMessage(r)
	stop()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("qmp: greeting: %w", err), ctx.Err(), closeConn(conn))
	}
	if greeting.QMP == nil {
		return nil, errors.Join(fmt.Errorf("qmp: expected a greeting, got %s", clipLine(greeting.raw)), closeConn(conn))
	}
	go q.read(r)
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		return nil, errors.Join(err, q.Close())
	}
	return q, nil
}

func readMessage(r *bufio.Reader) (message, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return message{}, err
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		return message{}, fmt.Errorf("qmp: bad message %q: %w", clipLine(line), err)
	}
	m.raw = line
	return m, nil
}

// clipLine shortens a line QEMU sent for a message: the start says enough, and a line can be long.
func clipLine(line []byte) string {
	const max = 200
	if len(line) <= max {
		return string(line)
	}
	return string(line[:max]) + "..."
}

// read delivers replies to their commands and events to the events channel until the connection ends.
func (q *QMP) read(r *bufio.Reader) {
	var err error
	for {
		var m message
		if m, err = readMessage(r); err != nil {
			break
		}
		debuglog.Debugf("qmp", "<- %s", clipLine(m.raw))
		if m.Event != "" {
			var ev Event
			if json.Unmarshal(m.raw, &ev) == nil {
				select {
				case q.events <- ev:
				default: // nobody reads events: drop them rather than block the replies
				}
			}
			continue
		}
		q.mu.Lock()
		ch := q.pending[m.ID]
		delete(q.pending, m.ID)
		q.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	q.mu.Lock()
	q.err = fmt.Errorf("%w: %w", ErrQMPClosed, err)
	for id, ch := range q.pending {
		close(ch)
		delete(q.pending, id)
	}
	q.mu.Unlock()
	close(q.events)
	close(q.done)
}

// Events returns the channel of asynchronous events; it is closed when the connection ends.
func (q *QMP) Events() <-chan Event { return q.events }

// Done is closed when the connection has ended.
func (q *QMP) Done() <-chan struct{} { return q.done }

// Execute sends the command with its arguments (nil for none) and decodes the reply's "return" value into
// result (nil to ignore it). An error reply is a *QMPError.
func (q *QMP) Execute(ctx context.Context, command string, args, result any) error {
	return q.execute(ctx, command, args, result, nil)
}

// execute is Execute; a non-nil fd goes along with the command as SCM_RIGHTS ancillary data, as getfd wants.
func (q *QMP) execute(ctx context.Context, command string, args, result any, fd *os.File) error {
	q.mu.Lock()
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	q.nextID++
	id := "imgform-" + strconv.FormatUint(q.nextID, 10)
	ch := make(chan message, 1)
	q.pending[id] = ch
	q.mu.Unlock()

	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id}
	b, err := json.Marshal(req)
	if err != nil {
		q.forget(id)
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	debuglog.Debugf("qmp", "-> %s", b)
	q.writeMu.Lock()
	if fd == nil {
		_, err = q.conn.Write(append(b, '\n'))
	} else if uc, ok := q.conn.(*net.UnixConn); !ok {
		err = errors.New("passing a file descriptor needs a unix socket")
	} else {
		_, _, err = uc.WriteMsgUnix(append(b, '\n'), syscall.UnixRights(int(fd.Fd())), nil)
	}
	q.writeMu.Unlock()
	if err != nil {
		q.forget(id)
		return fmt.Errorf("qmp: %s: %w", command, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			q.mu.Lock()
			err := q.err
			q.mu.Unlock()
			return fmt.Errorf("qmp: %s: %w", command, err)
		}
		if m.Error != nil {
			m.Error.Command = command
			return m.Error
		}
		if result != nil {
			if err := json.Unmarshal(m.Return, result); err != nil {
				return fmt.Errorf("qmp: %s: decode reply: %w", command, err)
			}
		}
		return nil
	case <-ctx.Done():
		q.forget(id)
		return fmt.Errorf("qmp: %s: %w", command, ctx.Err())
	}
}

func (q *QMP) forget(id string) {
	q.mu.Lock()
	delete(q.pending, id)
	q.mu.Unlock()
}

// Close ends the connection; the reader stops and Events is closed.
func (q *QMP) Close() error {
	err := q.conn.Close()
	<-q.done
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("qmp: close: %w", err)
	}
	return nil
}

// Status is the reply of query-status.
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"` // "running", "paused", "shutdown", ...
}

// QueryStatus asks whether the guest runs.
func (q *QMP) QueryStatus(ctx context.Context) (Status, error) {
	var s Status
	err := q.Execute(ctx, "query-status", nil, &s)
	return s, err
}

// SystemPowerdown presses the virtual power button (ACPI). It returns at once; the guest shuts down in
// its own time, and QEMU exits when it has.
func (q *QMP) SystemPowerdown(ctx context.Context) error {
	return q.Execute(ctx, "system_powerdown", nil, nil)
}

// Quit ends QEMU at once, like pulling the plug; the guest's unsynced writes are lost.
func (q *QMP) Quit(ctx context.Context) error {
	err := q.Execute(ctx, "quit", nil, nil)
	if errors.Is(err, ErrQMPClosed) {
		// QEMU may close the socket before the reply is read; that is the quit we asked for.
		return nil
	}
	return err
}

// Overlay is a qcow2 image to stack on a drive, and the settings its node gets.
type Overlay struct {
	File     string // an existing qcow2 image; its backing field is left as written
	NodeName string // unique among the VM's block nodes
	Cache    string // the drive's -drive cache mode, such as "unsafe"
}

// BlockdevSnapshot opens o.File as a node without its backing file (blockdev-add) and stacks it on the
// device's active image, which becomes its backing (blockdev-snapshot); QEMU leaves the backing field in
// the file's header as the caller wrote it. Unlike blockdev-snapshot-sync, which opens the overlay with
// the old node's flags only, the node gets detect-zeroes=unmap as the drive has: written zeros (the
// cleanup's zeroing of free space) become zero clusters instead of data that grows the file.
func (q *QMP) BlockdevSnapshot(ctx context.Context, device string, o Overlay) error {
	direct, noFlush := cacheFlags(o.Cache)
	add := map[string]any{
		"driver":        "qcow2",
		"node-name":     o.NodeName,
		"file":          map[string]any{"driver": "file", "filename": o.File},
		"backing":       nil,
		"discard":       "unmap",
		"detect-zeroes": "unmap",
		"cache":         map[string]any{"direct": direct, "no-flush": noFlush},
	}
	if err := q.Execute(ctx, "blockdev-add", add, nil); err != nil {
		return fmt.Errorf("blockdev-add: %w", err)
	}
	if err := q.Execute(ctx, "blockdev-snapshot", map[string]string{"node": device, "overlay": o.NodeName}, nil); err != nil {
		if derr := q.Execute(ctx, "blockdev-del", map[string]string{"node-name": o.NodeName}, nil); derr != nil {
			return fmt.Errorf("blockdev-snapshot: %w (and blockdev-del of the new node: %w)", err, derr)
		}
		return fmt.Errorf("blockdev-snapshot: %w", err)
	}
	return nil
}

// cacheFlags maps a -drive cache mode to the node's cache options. writethrough and directsync also turn
// the device's write cache off, which a node does not hold: the device keeps it across the snapshot.
func cacheFlags(mode string) (direct, noFlush bool) {
	switch mode {
	case "unsafe":
		return false, true
	case "none", "directsync":
		return true, false
	default: // writeback, writethrough
		return false, false
	}
}

func closeConn(c net.Conn) error {
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

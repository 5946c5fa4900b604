package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// maxQMPErrLen bounds the message of a QMP error that is not QEMU's own error reply: the client says what
// went wrong with a line, it does not paste the line.
const maxQMPErrLen = 1024

// FuzzQMP plays a QEMU that sends arbitrary bytes on its QMP socket, then closes its side: the client
// connects, queries the status and closes, and must finish each of those long before its deadline (a
// reply that never comes ends with the connection, not with a hang), deliver only named events, and
// keep its errors short.
func FuzzQMP(f *testing.F) {
	const greeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}` + "\n"
	const caps = `{"return": {}, "id": "imgform-1"}` + "\n"
	f.Add([]byte(greeting + caps + `{"return": {"running": true, "status": "running"}, "id": "imgform-2"}` + "\n"))
	f.Add([]byte(greeting + caps + `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}` + "\n" +
		`{"event": "STOP"}` + "\n" + `{"error": {"class": "GenericError", "desc": "no"}, "id": "imgform-2"}` + "\n"))
	f.Add([]byte(greeting + caps + `{"event": "SHUTDOWN", "data": 7}` + "\n" + `{"event": ""}` + "\n" + `{"return": 1, "id": "imgform-2"}` + "\n"))
	f.Add([]byte(greeting + `{"error": {"class": "CommandNotFound", "desc": "x"}, "id": "imgform-1"}` + "\n"))
	f.Add([]byte(greeting + caps + `{"return": {}, "id": "imgform-2"`))
	f.Add([]byte(`{"return": {}}` + "\n"))
	f.Add([]byte(`{"QMP": ` + strings.Repeat("[", 5000) + "\n"))
	f.Add([]byte(`"` + strings.Repeat("x", 5000) + "\n"))
	f.Add([]byte{})

	path := filepath.Join(f.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = l.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		served := make(chan error, 1)
		go func() { served <- serveBytes(l, data) }()
		defer func() {
			if err := <-served; err != nil {
				t.Fatal(err)
			}
		}()
		const deadline = 20 * time.Second // far beyond what a few lines take: reaching it is a hang
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		q, err := DialQMP(ctx, path)
		if err != nil {
			checkQMPErr(t, ctx, err)
			return
		}
		events := make(chan []Event, 1)
		go func() {
			var got []Event
			for ev := range q.Events() {
				got = append(got, ev)
			}
			events <- got
		}()
		_, err = q.QueryStatus(ctx)
		checkQMPErr(t, ctx, err)
		if err := q.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		for _, ev := range <-events {
			if ev.Name == "" {
				t.Fatalf("event without a name: %s", ev.Data)
			}
			if s, ok := ev.Shutdown(); ok != (ev.Name == "SHUTDOWN" && json.Unmarshal(ev.Data, &s) == nil) {
				t.Fatalf("Shutdown() of %s = %v", ev.Data, ok)
			}
		}
	})
}

// serveBytes accepts one connection on l, writes data, closes its writing side and reads what the client
// sends until the client closes.
func serveBytes(l net.Listener, data []byte) error {
	conn, err := l.Accept()
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	_, _ = conn.Write(data) // the client may hang up first
	if err := conn.(*net.UnixConn).CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
		return nil // the client hung up before
	}
	_, _ = io.Copy(io.Discard, conn)
	return nil
}

func checkQMPErr(t *testing.T, ctx context.Context, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if ctx.Err() != nil {
		t.Fatalf("the client was still waiting at its deadline: %v", err)
	}
	var qerr *QMPError
	if !errors.As(err, &qerr) && len(err.Error()) > maxQMPErrLen {
		t.Fatalf("error of %d bytes: %.200s...", len(err.Error()), err)
	}
}

// FuzzParseImageInfo checks the decoding of qemu-img info's JSON: what it accepts has a format and sizes
// that are not negative, a chain runs from the top image to one without a backing file, and both survive
// a round trip through JSON.
func FuzzParseImageInfo(f *testing.F) {
	top := `{"backing-filename-format": "raw", "virtual-size": 1048576, "filename": "t.qcow2", "cluster-size": 65536,
 "format": "qcow2", "actual-size": 200704, "format-specific": {"type": "qcow2", "data": {"compat": "1.1"}},
 "full-backing-filename": "/tmp/b.raw", "backing-filename": "/tmp/b.raw", "dirty-flag": false}`
	bottom := `{"virtual-size": 1048576, "filename": "/tmp/b.raw", "format": "raw", "actual-size": 0, "dirty-flag": false}`
	for _, s := range []string{top, bottom, "[" + top + ",\n" + bottom + "]", "[" + bottom + "]", "[" + top + "]",
		"[" + bottom + "," + bottom + "]", `null`, `{}`, `[]`, `[null]`, `{"format": "raw", "virtual-size": -1}`,
		`{"format": "raw", "virtual-size": 1e3}`, `{"FORMAT": "raw", "Virtual-Size": 5}`, `{"format": "raw"} trailing`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if info, err := parseImageInfo(data); err == nil {
			if info.check() != nil || info.Format == "" || info.VirtualSize < 0 || info.ActualSize < 0 {
				t.Fatalf("accepted %+v", info)
			}
			b, err := json.Marshal(info)
			if err != nil {
				t.Fatal(err)
			}
			if back, err := parseImageInfo(b); err != nil || back != info {
				t.Fatalf("round trip of %+v: %+v, %v", info, back, err)
			}
		}
		chain, err := parseBackingChain(data)
		if err != nil {
			return
		}
		if len(chain) == 0 || chain[len(chain)-1].BackingFilename != "" {
			t.Fatalf("accepted a chain of %d images that ends in a backing file", len(chain))
		}
		for i, info := range chain {
			if info.check() != nil || (i < len(chain)-1 && info.BackingFilename == "") {
				t.Fatalf("accepted image %d of the chain: %+v", i, info)
			}
		}
		b, err := json.Marshal(chain)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := parseBackingChain(b); err != nil || !reflect.DeepEqual(back, chain) {
			t.Fatalf("round trip of the chain: %v", err)
		}
	})
}

// maxHeaderReads bounds what the qcow2 checks read: the 104 bytes of the header and a backing file name
// of at most 1023 bytes, QEMU's own limit.
const maxHeaderReads = 104 + 1023

// countingReader records how many bytes were asked of it.
type countingReader struct {
	r     io.ReaderAt
	asked int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	c.asked += len(p)
	return c.r.ReadAt(p, off)
}

// FuzzQcow2Header writes arbitrary bytes to a file and runs the checks a source image goes through before
// any qemu tool opens it. They must read no more than a header and a name, say "qcow2" exactly for the
// qcow2 magic, and never let an image through whose header names a backing file (a non-zero backing file
// offset, which is what QEMU goes by) or an external data file.
func FuzzQcow2Header(f *testing.F) {
	header := func(version uint32, backingOffset uint64, backingSize uint32, incompat uint64, tail string) []byte {
		b := make([]byte, 104)
		binary.BigEndian.PutUint32(b[0:], qcow2Magic)
		binary.BigEndian.PutUint32(b[4:], version)
		binary.BigEndian.PutUint64(b[8:], backingOffset)
		binary.BigEndian.PutUint32(b[16:], backingSize)
		binary.BigEndian.PutUint64(b[72:], incompat)
		return append(b, tail...)
	}
	f.Add(header(3, 0, 0, 0, ""))
	f.Add(header(2, 0, 0, qcow2IncompatDataFile, ""))
	f.Add(header(3, 104, 10, 0, "/etc/shado"))
	f.Add(header(3, 104, 8, 0, "base.raw"))
	f.Add(header(3, 104, 9, 0, "x.qcow2"))
	f.Add(header(3, 104, 4, 0, "\x00abc"))
	f.Add(header(2, 104, 25, 0, `json:{"file":{"driver":1}}`))
	f.Add(header(3, 104, 3, 0, "nbd:x"))
	f.Add(header(3, 104, 0, 0, ""))
	f.Add(header(3, 104, 1024, 0, strings.Repeat("a", 1024)))
	f.Add(header(3, 1<<62, 10, 0, ""))
	f.Add(header(3, 1<<63+5, 10, 0, ""))
	f.Add(header(3, 0, 0, qcow2IncompatDataFile, "")[:76])
	f.Add(header(1, 0, 0, 0, "")[:71])
	f.Add([]byte("QFI"))
	f.Add(append(make([]byte, 510), 0x55, 0xaa))

	root := filepath.Join(f.TempDir(), "store")
	if err := os.Mkdir(root, 0o755); err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(root, "x.qcow2")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		magic := len(data) >= 4 && binary.BigEndian.Uint32(data) == qcow2Magic
		var backingOffset uint64
		if len(data) >= 16 {
			backingOffset = binary.BigEndian.Uint64(data[8:16])
		}
		dataFile := len(data) >= 80 && binary.BigEndian.Uint32(data[4:8]) >= 3 &&
			binary.BigEndian.Uint64(data[72:80])&qcow2IncompatDataFile != 0
		namesFile := magic && (backingOffset != 0 || dataFile)

		cr := &countingReader{r: bytes.NewReader(data)}
		h, ok, err := readQcow2Header(cr)
		if ok != magic {
			t.Fatalf("readQcow2Header: ok %v for magic %v", ok, magic)
		}
		if ok && err == nil {
			if (h.BackingOffset != 0) != (backingOffset != 0) {
				t.Fatalf("backing offset %d, header has %d", h.BackingOffset, backingOffset)
			}
			_, _ = h.backingName(cr)
		}
		if cr.asked > maxHeaderReads {
			t.Fatalf("read %d bytes of the header", cr.asked)
		}

		format, err := ProbeFormat(path)
		if err != nil || format != map[bool]string{true: "qcow2", false: "raw"}[magic] {
			t.Fatalf("ProbeFormat = %q, %v for magic %v", format, err, magic)
		}
		err = CheckStandalone(path, "qcow2")
		if err == nil && (!magic || namesFile) {
			t.Fatalf("CheckStandalone accepts an image that is not a standalone qcow2 (magic %v, backing offset %d, data file %v)",
				magic, backingOffset, dataFile)
		}
		if err != nil && len(err.Error()) > len(path)+maxHeaderReads+400 {
			t.Fatalf("error of %d bytes: %.200s...", len(err.Error()), err)
		}
		if err := CheckStandalone(path, "raw"); err != nil {
			t.Fatalf("CheckStandalone as raw: %v", err)
		}

		next, err := backingOf(path)
		switch {
		case err == nil && next == "" && namesFile:
			t.Fatalf("backingOf says no backing file (backing offset %d, data file %v)", backingOffset, dataFile)
		case err == nil && next != "" && (!filepath.IsAbs(next) || filepath.Clean(next) != next):
			t.Fatalf("backingOf = %q", next)
		}
		// The store holds this one file: a chain is within it only when the image is whole and names no
		// other file.
		if cerr := CheckChainWithin(path, root); (cerr == nil) != (err == nil && next == "") {
			t.Fatalf("CheckChainWithin = %v for an image naming %q (%v)", cerr, next, err)
		}
	})
}

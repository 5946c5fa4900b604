package qemutest

import (
	"net"
	"sync/atomic"
	"testing"
)

// LoopbackServer listens on the host's 127.0.0.1 and counts the connections it accepts (closing each at
// once): what a guest must not reach unless host_loopback allows it. It stops when the test ends.
type LoopbackServer struct {
	Port     int
	accepted atomic.Int32
}

// Accepted is the number of connections accepted so far.
func (s *LoopbackServer) Accepted() int32 { return s.accepted.Load() }

// ListenLoopback starts a LoopbackServer.
func ListenLoopback(t testing.TB) *LoopbackServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	s := &LoopbackServer{Port: l.Addr().(*net.TCPAddr).Port}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			_ = c.Close()
		}
	}()
	return s
}

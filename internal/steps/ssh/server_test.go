package ssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testServer is a small SSH server for tests without a guest: it runs each exec request with the local
// /bin/sh, as sshd runs it with the user's shell, and reports the exit status.
type testServer struct {
	addr    string
	hostKey ssh.Signer
	// dropSessions makes the server cut the connection when a command is about to start, that many times,
	// the way a restarting sshd does.
	dropSessions atomic.Int32
	// dropAfterStart cuts the connection after starting the command, that many times.
	dropAfterStart atomic.Int32
	sessions       atomic.Int32
	// started counts the commands started, probes aside.
	started atomic.Int32
}

func newTestServer(t *testing.T, clientKey *Key) *testServer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if keysEqual(k, clientKey.PublicKey()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: l.Addr().String(), hostKey: hostKey}
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
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(conn, cfg)
			}()
		}
	}()
	return s
}

func (s *testServer) serve(conn net.Conn, cfg *ssh.ServerConfig) {
	sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		_ = conn.Close() // the handshake failed; the client sees why
		return
	}
	defer func() { _ = sc.Close() }()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		s.sessions.Add(1)
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.session(sc, ch, creqs)
		}()
	}
}

func (s *testServer) session(sc *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer func() { _ = ch.Close() }()
	var cmd *exec.Cmd
	done := make(chan struct{})
	for req := range reqs {
		switch req.Type {
		case "exec":
			if cmd != nil {
				_ = req.Reply(false, nil)
				continue
			}
			var payload struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			// Dial's own probe ("true") is never dropped, so the counts below are about the command.
			probe := payload.Command == "true"
			if !probe && s.dropSessions.Add(-1) >= 0 {
				_ = sc.Close()
				return
			}
			cmd = exec.Command("/bin/sh", "-c", payload.Command)
			cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
			stdin, err := cmd.StdinPipe()
			if err != nil || cmd.Start() != nil {
				_ = req.Reply(false, nil)
				return
			}
			_ = req.Reply(true, nil)
			if !probe {
				s.started.Add(1)
			}
			go func() {
				_, _ = io.Copy(stdin, ch) // ends when the client sends EOF or closes the channel
				_ = stdin.Close()
			}()
			if !probe && s.dropAfterStart.Add(-1) >= 0 {
				_ = sc.Close()
			}
			go func() {
				defer close(done)
				err := cmd.Wait()
				status := 0
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
						status = 128 + int(ws.Signal())
					} else {
						status = exit.ExitCode()
					}
				}
				var b [4]byte
				binary.BigEndian.PutUint32(b[:], uint32(status))
				_, _ = ch.SendRequest("exit-status", false, b[:])
				_ = ch.Close()
			}()
		case "signal":
			_ = req.Reply(false, nil) // like an sshd without signal support; the wrapper must cope
		default:
			_ = req.Reply(false, nil)
		}
	}
	if cmd != nil {
		<-done
	}
}

// pin returns HostKeys pinned to the server's key.
func (s *testServer) pin() *HostKeys { return PinKeys(s.hostKey.PublicKey()) }

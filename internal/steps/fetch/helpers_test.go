package fetch

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const imageName = "debian-12-genericcloud-amd64.qcow2"

// testImage is big enough to arrive in many reads, so progress, cancellation and cut connections happen
// mid-body.
var testImage = func() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 256<<10; i++ {
		fmt.Fprintf(&b, "block %08d of a pretend qcow2 image\n", i)
	}
	return b.Bytes()
}()

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func sha512Hex(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }

// testServer serves files over loopback HTTP and counts requests per path. Some path prefixes misbehave on
// purpose: /cut/ sends half the body with the full Content-Length and closes the connection; /stall/
// sends half the body and then waits for the client to go away; /chunked/ sends the body in pieces without
// announcing its size; /announce/<n>/ announces n bytes, sends a few and hangs up.
type testServer struct {
	*httptest.Server
	files map[string][]byte

	mu   sync.Mutex
	hits map[string]int
}

func newServer(t *testing.T, files map[string][]byte) *testServer {
	t.Helper()
	s := &testServer{files: files, hits: map[string]int{}}
	quit := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/cut/"):
			s.serveCut(t, w, r)
		case strings.HasPrefix(r.URL.Path, "/stall/"):
			body := s.files[strings.TrimPrefix(r.URL.Path, "/stall")]
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(http.StatusOK)
			if _, err := w.Write(body[:len(body)/2]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-quit:
			}
		case strings.HasPrefix(r.URL.Path, "/chunked/"):
			body, ok := s.files[strings.TrimPrefix(r.URL.Path, "/chunked")]
			if !ok {
				http.NotFound(w, r)
				return
			}
			for len(body) > 0 { // each flush is a chunk: the response has no Content-Length
				n := min(len(body), 16<<10)
				if _, err := w.Write(body[:n]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				body = body[n:]
			}
		case strings.HasPrefix(r.URL.Path, "/announce/"):
			size, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/announce/"), "/")
			w.Header().Set("Content-Length", size)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(testImage[:1024]) // then the handler returns and the server closes the connection
		default:
			body, ok := s.files[r.URL.Path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			_, _ = w.Write(body) // the client may hang up; nothing to do about it here
		}
	}))
	t.Cleanup(func() {
		close(quit)
		s.Close()
	})
	return s
}

// serveCut writes a raw response by hand on the hijacked connection, so the cut happens exactly after
// half the announced body.
func (s *testServer) serveCut(t *testing.T, w http.ResponseWriter, r *http.Request) {
	body := s.files[strings.TrimPrefix(r.URL.Path, "/cut")]
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	bw := bufio.NewWriter(conn)
	fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/octet-stream\r\n\r\n", len(body))
	_, _ = bw.Write(body[:len(body)/2])
	if err := bw.Flush(); err != nil {
		t.Errorf("write half body: %v", err)
	}
	if err := conn.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func (s *testServer) hitCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *testServer) totalHits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.hits {
		n += c
	}
	return n
}

// filesUnder lists the files (not folders) below dir, relative to it.
func filesUnder(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			found = append(found, rel)
		}
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return found
}

func assertNoFiles(t *testing.T, dir string) {
	t.Helper()
	if left := filesUnder(t, dir); len(left) > 0 {
		t.Errorf("files left in %s: %v", dir, left)
	}
}

func assertContent(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read result: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s holds %d bytes, want the %d of the image", path, len(got), len(want))
	}
}

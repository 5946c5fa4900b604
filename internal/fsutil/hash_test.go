package fsutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

func TestHashFile(t *testing.T) {
	tests := map[string][]byte{
		"empty":                  nil,
		"small":                  []byte("imgform"),
		"exactly one chunk":      bytes.Repeat([]byte{1}, HashChunk),
		"a chunk and some bytes": bytes.Repeat([]byte("0123456789"), HashChunk/10+7),
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(path, content, 0o644); err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(content)
			sum, size, err := HashFile(context.Background(), path)
			if err != nil || sum != hex.EncodeToString(want[:]) || size != int64(len(content)) {
				t.Errorf("HashFile = %s, %d, %v; want %x, %d", sum, size, err, want, len(content))
			}
		})
	}
}

func TestHashFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := HashFile(context.Background(), filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	if _, _, err := HashFile(context.Background(), dir); err == nil {
		t.Error("hashing a folder succeeded")
	}

	path := filepath.Join(dir, "big")
	if err := os.WriteFile(path, make([]byte, 3*HashChunk), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := HashFile(ctx, path); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

// TestHashStopsBetweenChunks: a cancel that comes while hashing stops it at the next chunk, not at the end.
func TestHashStopsBetweenChunks(t *testing.T) {
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("stop")
	r := &cancelAfter{r: bytes.NewReader(make([]byte, 10*HashChunk)), left: HashChunk, cancel: func() { cancel(stop) }}
	_, n, err := Hash(ctx, r)
	if !errors.Is(err, stop) {
		t.Errorf("Hash = %v, want the cause of the cancel", err)
	}
	if n > 2*HashChunk {
		t.Errorf("read %d bytes after the cancel", n)
	}
}

func TestHashReadError(t *testing.T) {
	bad := errors.New("disk on fire")
	r := io.MultiReader(bytes.NewReader([]byte("some data")), iotest.ErrReader(bad))
	if _, _, err := Hash(context.Background(), r); !errors.Is(err, bad) {
		t.Errorf("Hash = %v, want the read error", err)
	}
}

// cancelAfter cancels once left bytes have been read.
type cancelAfter struct {
	r      io.Reader
	left   int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.left -= n; c.left <= 0 {
		c.cancel()
	}
	return n, err
}

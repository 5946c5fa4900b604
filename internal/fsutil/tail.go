package fsutil

import (
	"bytes"
	"sync"
	"unicode/utf8"
)

// TailBuffer is an io.Writer that keeps the last bytes written to it, for the end of a tool's output in
// an error message: the useful lines are the last ones, and a tool that loops on a warning must not fill
// the memory. It is safe for concurrent use, because exec copies stdout and stderr from two goroutines
// when both go to one writer.
type TailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   []byte // holds at most 2*limit bytes; String shows the last limit
	cut   bool   // something before buf was dropped
}

// NewTailBuffer returns a TailBuffer that keeps the last limit bytes.
func NewTailBuffer(limit int) *TailBuffer { return &TailBuffer{limit: max(limit, 0)} }

// Write keeps the end of p. It never fails.
func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.limit {
		p = p[len(p)-t.limit:]
		t.buf, t.cut = t.buf[:0], true
	}
	t.buf = append(t.buf, p...)
	// Dropping the front only once the buffer holds twice the limit keeps a Write O(len(p)) on average.
	if over := len(t.buf) - t.limit; over > t.limit {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return n, nil
}

// String returns the last limit bytes written, as valid UTF-8: a character the limit cut in two is
// dropped, and bytes that are not UTF-8 show as "?". When earlier output was dropped, the text starts with
// "...".
func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, cut := t.buf, t.cut
	if over := len(b) - t.limit; over > 0 {
		b, cut = b[over:], true
	}
	if !cut {
		return string(bytes.ToValidUTF8(b, []byte("?")))
	}
	// Skip the continuation bytes of a character whose start was dropped.
	for i := 0; i < utf8.UTFMax-1 && len(b) > 0 && !utf8.RuneStart(b[0]); i++ {
		b = b[1:]
	}
	return "..." + string(bytes.ToValidUTF8(b, []byte("?")))
}

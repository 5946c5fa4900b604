package step

import (
	"strings"
	"testing"
)

// LineTail passes on whole lines (without \r), keeps the last ones, and cuts a line without newlines into
// bounded pieces instead of buffering it whole.
func TestLineTail(t *testing.T) {
	var got []string
	lt := &LineTail{Emit: func(l string) { got = append(got, l) }}
	for _, chunk := range []string{"one\r\ntw", "o\nthree", ""} {
		if n, err := lt.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	if strings.Join(got, "|") != "one|two" || lt.Tail() != "one\ntwo\nthree" {
		t.Fatalf("emitted %q, tail %q", got, lt.Tail())
	}
	got = nil
	long := strings.Repeat("x", 3*maxLine+10)
	for i := 0; i < len(long); i += 4096 {
		_, _ = lt.Write([]byte(long[i:min(i+4096, len(long))]))
	}
	if len(got) != 3 || len(got[0]) != maxLine || len(lt.buf) > maxLine {
		t.Fatalf("a line without newline: %d pieces, buffered %d bytes", len(got), len(lt.buf))
	}
	for i := 0; i < 30; i++ {
		_, _ = lt.Write([]byte("line\n"))
	}
	if n := strings.Count(lt.Tail(), "\n"); n != tailLines-1 {
		t.Errorf("tail keeps %d lines, want %d", n+1, tailLines)
	}
}

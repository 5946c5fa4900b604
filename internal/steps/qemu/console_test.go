package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTailFile(t *testing.T) {
	long := strings.Repeat("x", 100) + "\n"
	cases := map[string]struct {
		content string
		n       int
		want    string
	}{
		"fewer lines than asked": {"a\nb\n", 5, "a\nb"},
		"last lines":             {"a\nb\nc\nd\n", 2, "c\nd"},
		"no final newline":       {"a\nb\nc", 2, "b\nc"},
		"carriage returns and colours": {"\x1b[0;32m  OK  \x1b[0m] Started ssh.\r\r\nlogin: \r\n", 5,
			"  OK  ] Started ssh.\nlogin: "},
		"cut first line dropped": {strings.Repeat(long, 1000) + "end\n", 2, strings.TrimSuffix(long, "\n") + "\nend"},
		"empty":                  {"", 3, ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "serial.log")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if got := TailFile(p, tc.n); got != tc.want {
				t.Errorf("TailFile = %q, want %q", got, tc.want)
			}
		})
	}
	if got := TailFile(filepath.Join(t.TempDir(), "missing"), 3); got != "" {
		t.Errorf("missing file: %q", got)
	}
}

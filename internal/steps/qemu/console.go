package qemu

import (
	"io"
	"os"
	"regexp"
	"strings"
)

// tailWindow is how much of the end of the serial log Tail reads: enough for dozens of lines of kernel and
// systemd output.
const tailWindow = 64 * 1024

// ansiRE matches the terminal escape sequences systemd colours its console lines with.
var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// Tail returns the last n lines of the serial console, without colour codes and carriage returns, for
// error messages. It returns "" when nothing was written yet.
func (vm *VM) Tail(n int) string {
	return TailFile(vm.paths.serial, n)
}

// TailFile returns the last n lines of the text file at path, cleaned like Tail.
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }() // read-only: nothing to lose on close
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-tailWindow, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	s := strings.ReplaceAll(ansiRE.ReplaceAllString(string(b), ""), "\r", "")
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // the first line was cut by the window
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

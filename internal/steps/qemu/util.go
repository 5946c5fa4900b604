package qemu

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// pickPort is freePort; tests replace it to make the port race happen.
var pickPort = freePort

// freePort asks the kernel for a free port on 127.0.0.1. Someone else may take it before QEMU binds it;
// Start then retries with another.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("qemu: find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("qemu: find a free port: %w", err)
	}
	return port, nil
}

// copyFile copies src to dst (mode 0600), replacing dst.
func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, in.Close()) }()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return errors.Join(err, out.Close())
	}
	return out.Close()
}

// quoteArgs prints a command line for the debug log: arguments that a shell would split or interpret are
// quoted, so that the line can be pasted.
func quoteArgs(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

package ssh

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// envNameRE is a POSIX shell variable name: anything else cannot be exported safely.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Quote makes s one word for a POSIX shell: it wraps s in single quotes and writes each single quote inside
// s as quote, backslash, quote, quote (close, escaped quote, reopen).
// Nothing is special inside single quotes, so no value can break out.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// exportLines returns "export NAME='value'" lines for env in name order, so the same environment gives the
// same script. The environment travels inside the command because sshd accepts only the few variables its
// AcceptEnv names.
func exportLines(env map[string]string) (string, error) {
	names := make([]string, 0, len(env))
	for name := range env {
		if !envNameRE.MatchString(name) {
			return "", fmt.Errorf("ssh: environment variable name %q is not a valid shell name", name)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		fmt.Fprintf(&b, "export %s=%s\n", name, Quote(env[name]))
	}
	return b.String(), nil
}

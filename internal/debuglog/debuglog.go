// Package debuglog is imgform's debug log (IMGFORM_LOG, -log-file): what happens below the steps, for a
// user who needs to see it: the QEMU command lines, QMP traffic, SSH connection attempts and the
// accelerator probe. It is off unless the CLI sets it up, and costs one atomic load per call then.
//
// Every line goes through the redactor the CLI sets once the configuration is loaded (sensitive values
// become "(sensitive)"), after formatting, so that no argument can carry a secret past it.
package debuglog

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Levels, from the most to the least verbose.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

var levels = map[string]int{LevelDebug: 0, LevelInfo: 1, LevelWarn: 2, LevelError: 3}

type sink struct {
	mu     sync.Mutex
	w      io.Writer
	level  int
	redact atomic.Pointer[func(string) string]
}

var current atomic.Pointer[sink]

// Setup starts logging lines at level and above to w; level "" or "off" stops logging. An unknown level is
// an error that lists the known ones.
func Setup(level string, w io.Writer) error {
	level = strings.ToLower(strings.TrimSpace(level))
	if level == "" || level == "off" {
		current.Store(nil)
		return nil
	}
	n, ok := levels[level]
	if !ok {
		return fmt.Errorf("log level %q: use debug, info, warn, error or off", level)
	}
	current.Store(&sink{w: w, level: n})
	return nil
}

// SetRedact sets the function every line passes through before it is written (config.Config.Redact).
func SetRedact(redact func(string) string) {
	if s := current.Load(); s != nil {
		s.redact.Store(&redact)
	}
}

// Enabled tells whether lines of level would be written: callers skip expensive formatting otherwise.
func Enabled(level string) bool {
	s := current.Load()
	return s != nil && levels[level] >= s.level
}

// Logf writes one line of level about area ("qemu", "qmp", "ssh", "accel"): a timestamp, the level, the
// area and the message, redacted.
func Logf(level, area, format string, args ...any) {
	s := current.Load()
	if s == nil || levels[level] < s.level {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if r := s.redact.Load(); r != nil {
		msg = (*r)(msg)
	}
	// One line per call: newlines inside a message (a QEMU error) are escaped.
	msg = strings.ReplaceAll(msg, "\n", `\n`)
	line := fmt.Sprintf("%s [%s] %s: %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), strings.ToUpper(level), area, msg)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.w, line) // a log that cannot be written must not fail the build
}

// Debugf is Logf at LevelDebug.
func Debugf(area, format string, args ...any) { Logf(LevelDebug, area, format, args...) }

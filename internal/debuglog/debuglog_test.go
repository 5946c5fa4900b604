package debuglog

import (
	"bytes"
	"strings"
	"testing"
)

// Lines at or above the level are written, one per call, redacted after formatting; off writes nothing.
func TestLogf(t *testing.T) {
	var buf bytes.Buffer
	if err := Setup("info", &buf); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = Setup("off", nil) }()
	SetRedact(func(s string) string { return strings.ReplaceAll(s, "hunter2", "(sensitive)") })
	Debugf("qmp", "not written")
	Logf(LevelWarn, "ssh", "password %s\nsecond line", "hunter2")
	if Enabled(LevelDebug) || !Enabled(LevelError) {
		t.Error("Enabled does not follow the level")
	}
	out := buf.String()
	if strings.Contains(out, "not written") || strings.Contains(out, "hunter2") || strings.Count(out, "\n") != 1 ||
		!strings.Contains(out, `[WARN] ssh: password (sensitive)\nsecond line`) {
		t.Errorf("log:\n%s", out)
	}
	if err := Setup("verbose", &buf); err == nil || !strings.Contains(err.Error(), "debug, info, warn, error or off") {
		t.Errorf("unknown level: %v", err)
	}
	_ = Setup("off", nil)
	buf.Reset()
	Logf(LevelError, "qemu", "x")
	if buf.Len() != 0 {
		t.Errorf("off wrote %q", buf.String())
	}
}

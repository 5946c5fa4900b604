package step

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"

	"gitlab.com/imgform/imgform/internal/config"
)

// ConfigError is an error about a value of the configuration that the engine finds only while running, such
// as a disk_size the downloaded source does not fit in. It says where the value is written, so the user
// knows what to change.
type ConfigError struct {
	// Subject is the range of the value in the configuration; zero when unknown.
	Subject hcl.Range
	Err     error
}

// ConfigErrorf makes a ConfigError about the value at subject.
func ConfigErrorf(subject hcl.Range, format string, args ...any) *ConfigError {
	return &ConfigError{Subject: subject, Err: fmt.Errorf(format, args...)}
}

// Error starts with file:line:col, as the configuration's own diagnostics do.
func (e *ConfigError) Error() string {
	if e.Subject.Filename == "" {
		return e.Err.Error()
	}
	return config.Pos(e.Subject) + ": " + e.Err.Error()
}

func (e *ConfigError) Unwrap() error { return e.Err }

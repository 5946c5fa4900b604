package config

import "strings"

// Redact replaces every sensitive value in s with "(sensitive value)". Logs, plans and state pass their text
// through it so a secret that reached a string by any path still does not leak.
func (c *Config) Redact(s string) string {
	return redact(c.Secrets, s)
}

func redact(secrets []string, s string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "(sensitive value)")
		}
	}
	return s
}

// RedactError is [RedactError] with c.Redact.
func (c *Config) RedactError(err error) error { return RedactError(err, c.Redact) }

// RedactError returns an error whose message is err's passed through redact (such as [Config.Redact]),
// and which keeps err's chain: Unwrap returns err, so errors.Is and errors.As find what err wraps. It
// returns nil for a nil err, and err itself when redact is nil.
//
// Only Error is redacted. Code that unwraps the chain and prints an inner error gets that error's own
// message, so a view prints the outermost error only.
func RedactError(err error, redact func(string) string) error {
	if err == nil || redact == nil {
		return err
	}
	return &redactedError{msg: redact(err.Error()), err: err}
}

// redactedError is the result of RedactError. Its message is redacted once, when it is made.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

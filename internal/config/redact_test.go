package config

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"
)

func TestRedactError(t *testing.T) {
	cfg := &Config{Secrets: []string{"hunter2", "s3cr3t"}}
	pathErr := &os.PathError{Op: "open", Path: "/run/hunter2", Err: fs.ErrNotExist}
	tests := map[string]struct {
		err    error
		want   string // the message; "" for a nil error
		is     []error
		asPath bool
	}{
		"nil stays nil": {err: nil},
		"no secret": {
			err:  fmt.Errorf("step 1: %w", context.Canceled),
			want: "step 1: context canceled",
			is:   []error{context.Canceled},
		},
		"secret in the outer message": {
			err:  fmt.Errorf("login with hunter2 failed: %w", context.DeadlineExceeded),
			want: "login with (sensitive value) failed: context deadline exceeded",
			is:   []error{context.DeadlineExceeded},
		},
		"secret deep in the chain": {
			err:    fmt.Errorf("provision: %w", fmt.Errorf("upload: %w", pathErr)),
			want:   "provision: upload: open /run/(sensitive value): file does not exist",
			is:     []error{fs.ErrNotExist},
			asPath: true,
		},
		"joined errors": {
			err:  errors.Join(errors.New("s3cr3t leaked"), fmt.Errorf("cleanup: %w", context.Canceled)),
			want: "(sensitive value) leaked\ncleanup: context canceled",
			is:   []error{context.Canceled},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := cfg.RedactError(tc.err)
			if tc.err == nil {
				if got != nil {
					t.Fatalf("RedactError(nil) = %v, want nil", got)
				}
				return
			}
			if got.Error() != tc.want {
				t.Errorf("Error() = %q, want %q", got.Error(), tc.want)
			}
			if errors.Unwrap(got) != tc.err {
				t.Errorf("Unwrap gives %v, want the original error", errors.Unwrap(got))
			}
			for _, target := range tc.is {
				if !errors.Is(got, target) {
					t.Errorf("errors.Is(%v) = false", target)
				}
			}
			var pe *os.PathError
			if ok := errors.As(got, &pe); ok != tc.asPath {
				t.Errorf("errors.As(*os.PathError) = %v, want %v", ok, tc.asPath)
			}
			// Wrapping the redacted error again keeps both the redaction and the chain.
			outer := fmt.Errorf("apply: %w", got)
			if strings.Contains(outer.Error(), "hunter2") || strings.Contains(outer.Error(), "s3cr3t") {
				t.Errorf("wrapped again: %q shows a secret", outer)
			}
			for _, target := range tc.is {
				if !errors.Is(outer, target) {
					t.Errorf("wrapped again: errors.Is(%v) = false", target)
				}
			}
		})
	}
}

func TestRedactErrorFunc(t *testing.T) {
	err := errors.New("token abc")
	if got := RedactError(err, nil); got != err {
		t.Errorf("a nil redact func gives %v, want the error itself", got)
	}
	calls := 0
	upper := func(s string) string { calls++; return strings.ToUpper(s) }
	got := RedactError(err, upper)
	for range 3 {
		if got.Error() != "TOKEN ABC" {
			t.Fatalf("Error() = %q", got.Error())
		}
	}
	if calls != 1 {
		t.Errorf("redact ran %d times, want once, when the error is made", calls)
	}
}

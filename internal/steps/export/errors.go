package export

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
)

// NoSpaceError reports a file system that filled up while the export wrote Path. errors.Is(err,
// syscall.ENOSPC) holds for it.
type NoSpaceError struct {
	Path   string // the file being written: the output's temp file or an intermediate file
	Needed int64  // estimate of the bytes the file needed in all
	Err    error  // the underlying error
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("no space left on device while writing %s (needed about %d MB): %v", e.Path, ceilMB(e.Needed), e.Err)
}

// Unwrap gives both ENOSPC, so callers can test for a full disk whatever reported it, and the cause.
func (e *NoSpaceError) Unwrap() []error { return []error{syscall.ENOSPC, e.Err} }

func ceilMB(n int64) int64 { return max((n+(1<<20)-1)>>20, 1) }

// isNoSpace tells whether err is a full disk, from Go (ENOSPC) or from qemu-img, which only says so on
// stderr.
func isNoSpace(err error) bool {
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	var te *ToolError
	return errors.As(err, &te) && strings.Contains(te.Stderr, "No space left on device")
}

// noSpace wraps err in a NoSpaceError when it is a full disk, else returns it unchanged.
func noSpace(err error, path string, needed int64) error {
	if err == nil || !isNoSpace(err) {
		return err
	}
	var ns *NoSpaceError
	if errors.As(err, &ns) {
		return err
	}
	return &NoSpaceError{Path: path, Needed: needed, Err: err}
}

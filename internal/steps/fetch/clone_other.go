//go:build !linux

package fetch

import "os"

// cloneFile clones only on Linux.
func cloneFile(dst, src *os.File) error { return errCannotClone }

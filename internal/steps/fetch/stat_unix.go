//go:build unix

package fetch

import (
	"io/fs"
	"syscall"
)

// inode returns the file's inode number, so that a file replaced by a copy with the same size and mtime
// (cp -p, rsync -t) does not pass for the one that was verified.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino) //nolint:unconvert // Ino is narrower on some BSDs
	}
	return 0
}

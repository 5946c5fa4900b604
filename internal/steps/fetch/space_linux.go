package fetch

import (
	"math"

	"golang.org/x/sys/unix"
)

// freeSpace returns the bytes an unprivileged writer can still use in the file system of dir (statfs's
// f_bavail blocks, which leave out the blocks reserved for root).
func freeSpace(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return -1, err
	}
	bsize := int64(st.Bsize)
	if bsize <= 0 {
		return -1, nil
	}
	if st.Bavail > uint64(math.MaxInt64/bsize) {
		return math.MaxInt64, nil
	}
	return int64(st.Bavail) * bsize, nil
}

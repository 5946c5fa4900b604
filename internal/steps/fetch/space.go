package fetch

import (
	"fmt"
	"io"
	"strconv"
	"syscall"
)

// A bad server can send an endless body, and the checksum only fails once it has all arrived: by then the
// disk may be full. So every download is bounded, and checked against the free space of its destination's
// file system before and while bytes arrive:
//
//   - A size the server announces (Content-Length) is not trusted as the image's size, but net/http never
//     reads past it, so it is a bound on what this response writes: one above the request's bound or above
//     the free space is refused before a byte is written.
//   - A body without an announced size is cut off at the request's bound (DefaultMaxSize unless the request
//     says otherwise), and stopped while spaceReserve is still free.
//   - While bytes arrive the free space is asked again (every spaceCheckEvery bytes): whatever else writes to
//     the same file system meanwhile, a download that can no longer finish stops early.
//
// The bytes are counted after net/http has undone any transfer compression, so a compressed body cannot
// slip past the bound. A local file copied to a destination gets the same free-space checks, with its size
// as the need. go-getter has a MaxBytes of its own, but it truncates a body without an announced size
// silently, and (v2.2.5) it is lost when a progress listener is set; the checks here replace it.

// DefaultMaxSize bounds a download whose request sets no MaxSize: 64 GiB, far above any cloud image published
// today (a few hundred MiB to a few GiB).
const DefaultMaxSize int64 = 64 << 30

// spaceReserve is what a download without an announced size leaves free at least: it is stopped rather than
// fill the file system the store and others share.
const spaceReserve = 64 << 20

// spaceCheckEvery is how many bytes arrive between two free-space checks.
const spaceCheckEvery = 16 << 20

// TooLargeError reports a download larger than the bound of its request.
type TooLargeError struct {
	Limit     int64 // the bound
	Announced int64 // the size the server announced, -1 when it announced none
}

func (e *TooLargeError) Error() string {
	if e.Announced >= 0 {
		size, limit := formatSizes(e.Announced, e.Limit)
		return fmt.Sprintf("the server announces %s, more than the download limit of %s", size, limit)
	}
	return fmt.Sprintf("the server sent more than the download limit of %s (it announced no size)", formatSize(e.Limit))
}

// SpaceError reports a download or copy that does not fit in the free space of its destination's file
// system. errors.Is(err, syscall.ENOSPC) holds for it.
type SpaceError struct {
	Dir  string // the destination's folder
	Need int64  // the bytes still to write; spaceReserve when the size is unknown
	Free int64  // the bytes free for an unprivileged writer
	Done int64  // the bytes already written
	// Unknown says the server announced no size: Need is then what imgform keeps free.
	Unknown bool
}

func (e *SpaceError) Error() string {
	need, free := formatSizes(e.Need, e.Free)
	switch {
	case e.Unknown:
		return fmt.Sprintf("not enough space in %s: %s written, the server announced no size, and only %s is free; imgform stops while %s is left rather than fill the file system",
			e.Dir, formatSize(e.Done), free, need)
	case e.Done > 0:
		return fmt.Sprintf("not enough space in %s: %s written, %s more needed, %s free (the file system filled up meanwhile)",
			e.Dir, formatSize(e.Done), need, free)
	}
	return fmt.Sprintf("not enough space in %s: the file needs %s, %s free", e.Dir, need, free)
}

// Unwrap makes the error a full disk for errors.Is.
func (e *SpaceError) Unwrap() error { return syscall.ENOSPC }

// spaceCheck asks the free space of a folder's file system; free is -1 when that cannot be known.
type spaceCheck struct {
	free  func(dir string) (int64, error) // statfs unless a test replaces it
	every int64
}

// spaceCheck returns the free-space check of f, with the test's replacements if any.
func (f *Fetcher) spaceCheck() spaceCheck {
	c := spaceCheck{free: f.freeSpace, every: f.spaceEvery}
	if c.free == nil {
		c.free = freeSpace
	}
	if c.every <= 0 {
		c.every = spaceCheckEvery
	}
	return c
}

// bound is what one download or copy may write into the folder dir: at most limit bytes (no bound when
// limit <= 0), and only while the file system has room.
type bound struct {
	dir   string
	limit int64
	space spaceCheck
}

// limitFor turns a Request.MaxSize into a bound's limit.
func limitFor(maxSize int64) int64 {
	if maxSize == 0 {
		return DefaultMaxSize
	}
	return maxSize
}

// guard wraps r, whose total size is total (-1 when unknown), in a reader that enforces b and reports
// progress, if set. An announced size above the bound or the free space makes the first Read fail, so
// that nothing is written.
func (b bound) guard(r io.ReadCloser, total int64, progress func(done, total int64)) io.ReadCloser {
	g := &guardedReader{ReadCloser: r, bound: b, total: total, report: progress}
	switch {
	case b.limit > 0 && total > b.limit:
		g.err = &TooLargeError{Limit: b.limit, Announced: total}
	default:
		g.err = g.checkSpace()
	}
	if g.report != nil {
		g.report(0, total)
	}
	return g
}

// guardedReader counts the bytes of a download as they arrive and stops it at its bound. Read runs on the
// downloading goroutine only.
type guardedReader struct {
	io.ReadCloser
	bound
	total     int64 // -1 when unknown
	done      int64
	checkedAt int64 // done at the last free-space check
	err       error // sticky
	report    func(done, total int64)
}

func (g *guardedReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.ReadCloser.Read(p)
	if g.limit > 0 && g.done+int64(n) > g.limit {
		// Keep what fits and fail: the file never holds more than the bound.
		n = int(g.limit - g.done)
		g.err = &TooLargeError{Limit: g.limit, Announced: -1}
		err = g.err
	}
	g.done += int64(n)
	if n > 0 && g.report != nil {
		g.report(g.done, g.total)
	}
	if g.err == nil && g.done-g.checkedAt >= g.space.every {
		if g.err = g.checkSpace(); g.err != nil {
			err = g.err
		}
	}
	return n, err
}

// checkSpace fails when the file system of the destination has no room for the rest of the download: the
// bytes still to come when the size is known, else spaceReserve. A file system that cannot tell (statfs
// failed, or another OS) is not checked: writing will then fail with ENOSPC as it always could.
func (g *guardedReader) checkSpace() error {
	g.checkedAt = g.done
	free, err := g.space.free(g.dir)
	if err != nil || free < 0 {
		return nil
	}
	need, unknown := g.total-g.done, g.total < 0
	if unknown {
		need = spaceReserve
	}
	if free < need {
		return &SpaceError{Dir: g.dir, Need: need, Free: free, Done: g.done, Unknown: unknown}
	}
	return nil
}

// formatSizes renders two byte counts that are compared in a message, with the exact counts when the
// rounded ones look the same.
func formatSizes(a, b int64) (string, string) {
	fa, fb := formatSize(a), formatSize(b)
	if fa == fb && a != b {
		return fmt.Sprintf("%s (%d bytes)", fa, a), fmt.Sprintf("%s (%d bytes)", fb, b)
	}
	return fa, fb
}

// formatSize renders a byte count for people: "256 KiB", "1.5 GiB", "17 B".
func formatSize(n int64) string {
	const units = "KMGTPE"
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for ; (v >= 1024 || v <= -1024) && i < len(units)-1; i++ {
		v /= 1024
	}
	s := strconv.FormatFloat(v, 'f', 1, 64)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		s = s[:len(s)-2]
	}
	return s + " " + units[i:i+1] + "iB"
}

package fetch

import "io"

// progressTracker adapts a Request.Progress callback to go-getter's ProgressTracker, which go-getter's
// HTTP getter calls with the response body; the wrapper counts the bytes as go-getter copies them.
type progressTracker struct {
	report func(done, total int64)
}

// TrackProgress implements getter.ProgressTracker. go-getter passes the size already on disk (always 0
// here: downloads start from an empty file) and that plus the Content-Length, or less when the server
// sends none; an unknown total is reported as -1.
func (t progressTracker) TrackProgress(_ string, current, total int64, stream io.ReadCloser) io.ReadCloser {
	if total <= current {
		total = -1
	}
	t.report(current, total)
	return &progressReader{ReadCloser: stream, report: t.report, done: current, total: total}
}

// progressReader reports after every read. The callback runs on the downloading goroutine, so it must be
// quick; drawing is the caller's business (and throttling too, if it wants any).
type progressReader struct {
	io.ReadCloser
	report      func(done, total int64)
	done, total int64
}

func (r *progressReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.done += int64(n)
		r.report(r.done, r.total)
	}
	return n, err
}

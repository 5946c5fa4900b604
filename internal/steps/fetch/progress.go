package fetch

import "io"

// tracker is the go-getter ProgressTracker of every download: go-getter's HTTP getter hands it the response
// body with the announced size before copying, and copies what it returns. That is where the download's
// bound and free-space checks (space.go) and the Request.Progress callback sit.
type tracker struct {
	bound  bound
	report func(done, total int64) // may be nil
}

// TrackProgress implements getter.ProgressTracker. go-getter passes the size already on disk (always 0
// here: downloads start from an empty file) and that plus the Content-Length, or less when the server
// sends none; an unknown total is reported as -1. The callback runs on the downloading goroutine after
// every read, so it must be quick; drawing is the caller's business (and throttling too, if it wants any).
func (t tracker) TrackProgress(_ string, current, total int64, stream io.ReadCloser) io.ReadCloser {
	if total <= current {
		total = -1
	}
	return t.bound.guard(stream, total, t.report)
}

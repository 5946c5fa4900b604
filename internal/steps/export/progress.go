package export

import "fmt"

// env carries the caller's hooks through the phases of one export.
type env struct {
	log      func(string)
	progress func(phase string, done, total int64)
}

func (e *env) logf(format string, args ...any) {
	if e.log != nil {
		e.log(fmt.Sprintf(format, args...))
	}
}

// progressSteps is about how many Progress calls a phase makes: enough for a smooth bar, few enough
// that a slow callback does not slow the copy.
const progressSteps = 256

// meter reports one phase's progress, thinned out to about progressSteps calls.
type meter struct {
	fn           func(phase string, done, total int64)
	phase        string
	total, step  int64
	last         int64
	started, end bool
}

func (e *env) meter(phase string, total int64) *meter {
	return &meter{fn: e.progress, phase: phase, total: total, step: max(total/progressSteps, 1)}
}

// report passes done on when it is the first call, the last (done == total) or far enough from the
// previous one. Calls come from one goroutine at a time.
func (m *meter) report(done int64) {
	if m.fn == nil || m.end {
		return
	}
	done = min(max(done, 0), m.total)
	if m.started && done < m.total && done-m.last < m.step {
		return
	}
	m.started, m.last, m.end = true, done, done == m.total
	m.fn(m.phase, done, m.total)
}

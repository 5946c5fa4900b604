package e2e

import (
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/engine"
)

// recorder logs what the engine reports into the test log and keeps the statuses.
type recorder struct {
	engine.NoHooks
	t        *testing.T
	mu       sync.Mutex
	finished map[string]engine.StepStatus
	messages []string
	output   map[string][]printedLine // lines by step ID
}

func newRecorder(t *testing.T) *recorder {
	return &recorder{t: t, finished: map[string]engine.StepStatus{}}
}

func (r *recorder) StepStarted(s *engine.StepPlan) { r.t.Logf("%s: running", s.ID) }

func (r *recorder) StepOutput(s *engine.StepPlan, line string) {
	r.t.Logf("%s: %s", s.ID, line)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.output == nil {
		r.output = map[string][]printedLine{}
	}
	r.output[s.ID] = append(r.output[s.ID], printedLine{line, time.Now()})
}

// printedLine is a line a step printed and when it arrived.
type printedLine struct {
	text string
	at   time.Time
}

// printed returns the lines a step printed.
func (r *recorder) printed(id string) []printedLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]printedLine(nil), r.output[id]...)
}

func (r *recorder) StepFinished(s *engine.StepPlan, st engine.StepStatus, d time.Duration, err error) {
	if err != nil {
		r.t.Logf("%s: %s in %s: %v", s.ID, st, d.Round(time.Second), err)
	} else {
		r.t.Logf("%s: %s in %s", s.ID, st, d.Round(time.Second))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished[s.ID] = st
}

func (r *recorder) Message(l engine.Level, text string) {
	r.t.Logf("%s: %s", l, text)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, string(l)+": "+text)
}

// said reports whether a message so far holds every one of parts.
func (r *recorder) said(parts ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.messages {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(m, p)
		}
		if all {
			return true
		}
	}
	return false
}

func (r *recorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, st := range r.finished {
		if st == engine.StatusDone {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// with lists "id=status" for the steps that ended with one of statuses, sorted.
func (r *recorder) with(statuses ...engine.StepStatus) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, st := range r.finished {
		for _, want := range statuses {
			if st == want {
				out = append(out, id+"="+string(st))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// loginCommand is the ssh command line of an apply -on-error=keep message, or "".
func (r *recorder) loginCommand() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.messages {
		if _, after, ok := strings.Cut(m, "Log in with:\n"); ok {
			line, _, _ := strings.Cut(after, "\n")
			return strings.TrimSpace(line)
		}
	}
	return ""
}

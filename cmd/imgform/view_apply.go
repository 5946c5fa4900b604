package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"gitlab.com/imgform/imgform/internal/engine"
)

// lineHooks renders apply as plain lines, for logs and CI; with a terminal it adds a progress bar for the
// step that reports progress.
type lineHooks struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	verbose  bool
	bar      *progressbar.ProgressBar
	barStep  *engine.StepPlan
	barPhase string
}

func (h *lineHooks) prefix(s *engine.StepPlan) string {
	return fmt.Sprintf("[%s] %s", s.Image, s.Label)
}

func (h *lineHooks) printf(format string, args ...any) {
	if h.bar != nil {
		_ = h.bar.Clear()
	}
	fmt.Fprintf(h.w, format, args...)
	if h.bar != nil {
		_ = h.bar.RenderBlank()
	}
}

func (h *lineHooks) Planned(p *engine.Plan) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.printf("Plan: %d to run, %d cached.\n", p.ToRun, p.Cached)
}

func (h *lineHooks) StepStarted(s *engine.StepPlan) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.printf("%s: running\n", h.prefix(s))
}

func (h *lineHooks) StepProgress(s *engine.StepPlan, phase string, done, total int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.terminal {
		return
	}
	if h.barStep != s || h.barPhase != phase || h.bar == nil {
		h.closeBar()
		h.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(h.w),
			progressbar.OptionSetDescription(fmt.Sprintf("%s: %s", h.prefix(s), phase)),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
		h.barStep, h.barPhase = s, phase
	}
	_ = h.bar.Set64(done)
}

func (h *lineHooks) closeBar() {
	if h.bar != nil {
		_ = h.bar.Clear()
		h.bar, h.barStep = nil, nil
	}
}

func (h *lineHooks) StepOutput(s *engine.StepPlan, line string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.printf("%s: %s\n", h.prefix(s), line)
}

func (h *lineHooks) StepFinished(s *engine.StepPlan, status engine.StepStatus, elapsed time.Duration, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.barStep == s {
		h.closeBar()
	}
	switch {
	case err != nil && status != engine.StatusSkipped:
		h.printf("%s: %s after %s: %v\n", h.prefix(s), status, elapsed.Round(100*time.Millisecond), err)
	case err != nil:
		h.printf("%s: %s (%v)\n", h.prefix(s), status, err)
	case status == engine.StatusCached:
		h.printf("%s: cached (built meanwhile by another apply)\n", h.prefix(s))
	default:
		h.printf("%s: %s in %s\n", h.prefix(s), status, elapsed.Round(100*time.Millisecond))
	}
}

func (h *lineHooks) Message(level engine.Level, text string) {
	if level == engine.LevelDebug && !h.verbose {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.printf("%s: %s\n", level, text)
}

// jsonHooks prints one JSON object per event, for machines (-json).
type jsonHooks struct {
	mu  sync.Mutex
	enc *json.Encoder
	now func() time.Time
}

type jsonEvent struct {
	Type      string             `json:"type"`
	Time      time.Time          `json:"time"`
	Step      string             `json:"step,omitempty"`
	Label     string             `json:"label,omitempty"`
	Status    engine.StepStatus  `json:"status,omitempty"`
	Phase     string             `json:"phase,omitempty"`
	Done      int64              `json:"done,omitempty"`
	Total     int64              `json:"total,omitempty"`
	ElapsedMs int64              `json:"elapsed_ms,omitempty"`
	Error     string             `json:"error,omitempty"`
	Line      string             `json:"line,omitempty"`
	Level     engine.Level       `json:"level,omitempty"`
	Plan      *engine.Plan       `json:"plan,omitempty"`
	Outputs   []engineOutputJSON `json:"outputs,omitempty"`
}

type engineOutputJSON = engine.OutputResult

func (h *jsonHooks) emit(e jsonEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e.Time = h.now().UTC()
	_ = h.enc.Encode(e)
}

func (h *jsonHooks) Planned(p *engine.Plan) { h.emit(jsonEvent{Type: "plan", Plan: p}) }
func (h *jsonHooks) StepStarted(s *engine.StepPlan) {
	h.emit(jsonEvent{Type: "step_started", Step: s.ID, Label: s.Label})
}
func (h *jsonHooks) StepProgress(s *engine.StepPlan, phase string, done, total int64) {
	h.emit(jsonEvent{Type: "step_progress", Step: s.ID, Phase: phase, Done: done, Total: total})
}
func (h *jsonHooks) StepOutput(s *engine.StepPlan, line string) {
	h.emit(jsonEvent{Type: "step_output", Step: s.ID, Line: line})
}
func (h *jsonHooks) StepFinished(s *engine.StepPlan, status engine.StepStatus, elapsed time.Duration, err error) {
	e := jsonEvent{Type: "step_finished", Step: s.ID, Label: s.Label, Status: status, ElapsedMs: elapsed.Milliseconds()}
	if err != nil {
		e.Error = err.Error()
	}
	h.emit(e)
}
func (h *jsonHooks) Message(level engine.Level, text string) {
	h.emit(jsonEvent{Type: "message", Level: level, Line: text})
}

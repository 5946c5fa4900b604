package main

import (
	"testing"
	"time"
)

// The test step runs beside the export: only the part after every other step ended lengthens the apply.
func TestAnalyzeTests(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ev := func(typ, step string, at, elapsed time.Duration) event {
		return event{Type: typ, Step: step, Time: t0.Add(at), Status: "done", ElapsedMs: elapsed.Milliseconds()}
	}
	r := &run{Start: t0, Wall: 10 * time.Minute, Events: []event{
		ev("step_started", "img/cleanup", 5*time.Minute, 0), ev("step_finished", "img/cleanup", 6*time.Minute, time.Minute),
		ev("step_started", "img/export/qcow2", 6*time.Minute, 0), ev("step_finished", "img/export/qcow2", 7*time.Minute, time.Minute),
		ev("step_started", "img/test", 6*time.Minute, 0), ev("step_finished", "img/test", 9*time.Minute, 3*time.Minute),
	}}
	c, ok := analyzeTests(r)
	if !ok || c.Own != 3*time.Minute || c.Extension != 2*time.Minute || c.Share != 0.2 {
		t.Errorf("%+v %v, want own 3m, extension 2m, share 0.2", c, ok)
	}
	r.Events = r.Events[:4]
	if _, ok := analyzeTests(r); ok {
		t.Error("a run without a test step reports one")
	}
}

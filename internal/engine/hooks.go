package engine

import "time"

// Level grades a message.
type Level string

const (
	LevelDebug Level = "debug"
	LevelInfo  Level = "info"
	LevelWarn  Level = "warn"
)

// StepStatus is how a step ended.
type StepStatus string

const (
	StatusDone     StepStatus = "done"
	StatusCached   StepStatus = "cached"
	StatusPulled   StepStatus = "pulled"   // downloaded from the remote cache
	StatusRestored StepStatus = "restored" // an output written from its object in the store, not rebuilt
	StatusFailed   StepStatus = "failed"
	StatusSkipped  StepStatus = "skipped" // a step it depends on failed, or apply was cancelled first
	StatusCanceled StepStatus = "canceled"
)

// Hooks receives what the engine does; the CLI renders it as progress bars, plain lines or JSON events.
// Calls may come from several goroutines at once; implementations must be safe for that and must not
// block for long. Texts passed here are already redacted.
type Hooks interface {
	// Planned is called once with the plan, before anything runs.
	Planned(p *Plan)
	// StepStarted is called when a step begins to run.
	StepStarted(s *StepPlan)
	// StepProgress reports a phase of a running step ("download", "compress") with bytes done and total
	// (total -1 when unknown).
	StepProgress(s *StepPlan, phase string, done, total int64)
	// StepOutput is one line a step produced, such as a provisioner's output.
	StepOutput(s *StepPlan, line string)
	// StepFinished is called once per step of the plan that ran or was skipped because of a failure.
	StepFinished(s *StepPlan, status StepStatus, elapsed time.Duration, err error)
	// Message is anything else worth telling: lock waits, fallbacks, key debugging.
	Message(level Level, text string)
}

// NoHooks ignores everything; embed it to implement only some methods.
type NoHooks struct{}

func (NoHooks) Planned(*Plan)                                            {}
func (NoHooks) StepStarted(*StepPlan)                                    {}
func (NoHooks) StepProgress(*StepPlan, string, int64, int64)             {}
func (NoHooks) StepOutput(*StepPlan, string)                             {}
func (NoHooks) StepFinished(*StepPlan, StepStatus, time.Duration, error) {}
func (NoHooks) Message(Level, string)                                    {}

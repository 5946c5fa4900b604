package main

import (
	"slices"
	"strings"
	"time"
)

// event is one line of `imgform apply -json` (docs/plan-json.md). Only the fields the bench reads are
// declared; encoding/json ignores the rest, as the format asks readers to.
type event struct {
	Type      string    `json:"type"`
	Time      time.Time `json:"time"`
	Step      string    `json:"step"`
	Label     string    `json:"label"`
	Status    string    `json:"status"`
	Phase     string    `json:"phase"`
	ElapsedMs int64     `json:"elapsed_ms"`
	Error     string    `json:"error"`
	Level     string    `json:"level"`
	Line      string    `json:"line"`
	Plan      *plan     `json:"plan"`
	Outputs   []output  `json:"outputs"`
}

// plan is the part of the JSON plan the bench reads: which steps exist, their keys and actions.
type plan struct {
	Images []struct {
		Name  string     `json:"name"`
		Steps []planStep `json:"steps"`
	} `json:"images"`
	ToRun   int `json:"to_run"`
	Cached  int `json:"cached"`
	Skipped int `json:"skipped"`
}

type planStep struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Key    string `json:"key"`
	Action string `json:"action"`
	Output string `json:"output"`
}

// output is one element of apply_finished's outputs. The docs spell the fields in lower case; matching
// in encoding/json is case-insensitive, so either spelling is read.
type output struct {
	Image   string `json:"image"`
	Name    string `json:"name"`
	Path    string `json:"path"`
	SHA256  string `json:"sha256"`
	Size    int64  `json:"size"`
	Written bool   `json:"written"`
}

// stepTime is one step of an apply as the events tell it.
type stepTime struct {
	ID, Kind, Image string
	Status          string
	Start           time.Time     // step_started
	Elapsed         time.Duration // elapsed_ms of step_finished: start to the end of the step's own work
	Finished        time.Time     // time of step_finished; for guest steps that is after the VM is off and the layers are committed
	Error           string
}

// End is when the step's own work ended.
func (s stepTime) End() time.Time { return s.Start.Add(s.Elapsed) }

// guestKinds are the steps that run inside the VM session.
var guestKinds = map[string]bool{"boot": true, "provision": true, "cleanup": true}

// steps pairs step_started with step_finished events, in order of start. A step that only finished (no
// start event) keeps a zero Start.
func steps(events []event) []stepTime {
	var out []stepTime
	idx := map[string]int{}
	for _, e := range events {
		switch e.Type {
		case "step_started":
			idx[e.Step] = len(out)
			out = append(out, stepTime{ID: e.Step, Start: e.Time})
		case "step_finished":
			i, ok := idx[e.Step]
			if !ok {
				idx[e.Step] = len(out)
				i = len(out)
				out = append(out, stepTime{ID: e.Step})
			}
			out[i].Status = e.Status
			out[i].Elapsed = time.Duration(e.ElapsedMs) * time.Millisecond
			out[i].Finished = e.Time
			out[i].Error = e.Error
		}
	}
	for i := range out {
		out[i].Image, out[i].Kind = splitID(out[i].ID)
	}
	slices.SortStableFunc(out, func(a, b stepTime) int { return a.Start.Compare(b.Start) })
	return out
}

// splitID splits "image/kind[/name]" into the image and the kind.
func splitID(id string) (image, kind string) {
	parts := strings.SplitN(id, "/", 3)
	if len(parts) < 2 {
		return id, ""
	}
	return parts[0], parts[1]
}

// ran returns the ids of the steps that did work (status done).
func ran(st []stepTime) []string {
	var ids []string
	for _, s := range st {
		if s.Status == "done" {
			ids = append(ids, s.ID)
		}
	}
	return ids
}

// failed returns the steps that failed or were cancelled, with their errors.
func failed(st []stepTime) []stepTime {
	var bad []stepTime
	for _, s := range st {
		if s.Status == "failed" || s.Status == "canceled" {
			bad = append(bad, s)
		}
	}
	return bad
}

// planOf returns the plan event's plan, or nil.
func planOf(events []event) *plan {
	for _, e := range events {
		if e.Type == "plan" && e.Plan != nil {
			return e.Plan
		}
	}
	return nil
}

// finishedOf returns the apply_finished event, or nil when the apply died before it.
func finishedOf(events []event) *event {
	for i := range events {
		if events[i].Type == "apply_finished" {
			return &events[i]
		}
	}
	return nil
}

// stepKey returns the cache key of a step from the plan.
func (p *plan) stepKey(id string) string {
	for _, img := range p.Images {
		for _, s := range img.Steps {
			if s.ID == id {
				return s.Key
			}
		}
	}
	return ""
}

// derived returns the images without a fetch step: those that start from another image's result.
func (p *plan) derived() []string {
	var names []string
	for _, img := range p.Images {
		if !slices.ContainsFunc(img.Steps, func(s planStep) bool { return s.Kind == "fetch" }) {
			names = append(names, img.Name)
		}
	}
	return names
}

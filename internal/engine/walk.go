package engine

import (
	"gitlab.com/imgform/imgform/internal/step"

	"context"
	"sync"
)

// unit is a piece of work in the apply walk: one fetch, seed or export step, or the VM session of an image
// (several disk steps). Units run when all their dependencies succeeded, at most parallelism at once, in
// the manner of terraform's dag walk: one goroutine per unit waiting on its inputs.
type unit struct {
	name  string
	steps []*step.Step
	deps  []*unit
	run   func(ctx context.Context) error

	done chan struct{}
	err  error
	ok   bool
}

// errDependencyFailed marks units skipped because something they need failed or apply was cancelled.
type errDependencyFailed struct{ dep string }

func (e errDependencyFailed) Error() string { return "not run: " + e.dep + " did not succeed" }

// walk runs the units; skipped is called for units that did not run because of a failed dependency.
func walk(ctx context.Context, units []*unit, parallelism int, skipped func(u *unit, cause error)) {
	if parallelism < 1 {
		parallelism = 1
	}
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	for _, u := range units {
		u.done = make(chan struct{})
	}
	for _, u := range units {
		wg.Add(1)
		go func(u *unit) {
			defer wg.Done()
			defer close(u.done)
			for _, d := range u.deps {
				<-d.done
				if !d.ok {
					u.err = errDependencyFailed{d.name}
					skipped(u, u.err)
					return
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				u.err = ctx.Err()
				skipped(u, u.err)
				return
			}
			defer func() { <-sem }()
			if err := ctx.Err(); err != nil {
				u.err = err
				skipped(u, err)
				return
			}
			u.err = u.run(ctx)
			u.ok = u.err == nil
		}(u)
	}
	wg.Wait()
}

package engine

import (
	"context"
	"fmt"

	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// verifyChain checks the content of obj and of every object below it: a disk reads through its whole
// backing chain down to the source, so damage anywhere in it must fail the step rather than end up in an
// image. Each object is hashed at most once per apply.
func (a *applier) verifyChain(ctx context.Context, obj *state.Object) error {
	for {
		a.mu.Lock()
		seen := a.verified[obj.Key]
		a.mu.Unlock()
		if !seen {
			if err := a.e.Store.VerifyExcept(ctx, obj, step.StateFile); err != nil {
				return err
			}
			a.mu.Lock()
			if a.verified == nil {
				a.verified = map[state.Key]bool{}
			}
			a.verified[obj.Key] = true
			a.mu.Unlock()
		}
		if obj.Parent.IsZero() {
			return nil
		}
		parent, ok, err := a.e.Store.Lookup(obj.Parent)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("the layer %s builds on (%s) is missing or damaged: %w", obj.Key.Short(), obj.Parent.Short(), state.ErrCorrupt)
		}
		obj = parent
	}
}

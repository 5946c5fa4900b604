package steptest

import (
	"context"
	"testing"

	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// Key keys the step s with its kind's Key, as the planner does, and returns the key and its inputs.
func Key(t testing.TB, kc *step.KeyContext, s *step.Step) (state.Key, []step.Input) {
	t.Helper()
	b := step.NewKeyBuilder(kc, s)
	if err := s.Kind.Key(context.Background(), kc, s, b); err != nil {
		t.Fatal(err)
	}
	k, inputs, err := b.Sum()
	if err != nil {
		t.Fatal(err)
	}
	return k, inputs
}

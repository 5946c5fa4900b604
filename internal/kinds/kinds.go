// Package kinds lists the step kinds an image runs, in order. Adding a kind is one new package under
// internal/kinds and one line here (docs/architecture.md).
package kinds

import (
	"gitlab.com/imgform/imgform/internal/kinds/boot"
	"gitlab.com/imgform/imgform/internal/kinds/cleanup"
	"gitlab.com/imgform/imgform/internal/kinds/export"
	"gitlab.com/imgform/imgform/internal/kinds/fetch"
	"gitlab.com/imgform/imgform/internal/kinds/provision"
	"gitlab.com/imgform/imgform/internal/kinds/seed"
	"gitlab.com/imgform/imgform/internal/kinds/test"
	"gitlab.com/imgform/imgform/internal/step"
)

// All returns every kind in the order an image runs them: guest kinds in this order form the layer chain.
func All() []step.Kind {
	return []step.Kind{
		fetch.Kind{},
		seed.Kind{},
		boot.Kind{},
		provision.Kind{},
		cleanup.Kind{},
		export.Kind{},
		test.Kind{},
	}
}

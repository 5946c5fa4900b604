// Package step is the interface between the engine and the step kinds, in the manner of Packer's
// multistep.Step and BuildKit's Op, with what they lack: each kind owns its cache key (typed inputs, the
// text of any script it runs in the guest included), the explanation of a changed key, and its run.
//
// The engine (internal/engine) keeps the graph, the store, the walk, the record and the plan and knows no
// kind by name: it asks a kind for its class (where its steps sit in an image and where they run), its
// instances in an image, its key and its run, and a few optional capabilities (a file written outside the
// store, a report that verifies the image, a disk its result holds). The kinds live in internal/kinds, one
// package each; internal/kinds.All lists them in the order an image runs them. The VM package
// (internal/steps/vm) provides the guest session the guest kinds run in.
//
// This package imports no kind and not the engine, so a kind's package never depends on the engine.
package step

// Package engine turns a configuration into a graph of content-addressed steps, plans which of them must run
// and why, and runs them. It never prints: everything a user sees goes through [Hooks].
//
// Each image expands into fetch -> seed -> boot -> one step per provisioner -> cleanup -> one export per
// output. A derived image starts from its parent's cleanup step instead of a fetch. Every step has a key
// (keys.go) computed from everything that can change its result; a step whose key has an object in the store
// is cached. Disk steps store qcow2 layers over their parent's layer, so the cache holds deltas.
package engine

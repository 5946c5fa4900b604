package main

import (
	"gitlab.com/imgform/imgform/internal/engine"
	"gitlab.com/imgform/imgform/internal/steps/vm"
)

// guestRunner returns the VM runner for boot, provision and cleanup steps and for the test step: QEMU and SSH.
func guestRunner(engine.Hooks) *vm.Runner { return &vm.Runner{} }

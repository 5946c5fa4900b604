package main

import (
	"gitlab.com/imgform/imgform/engine"
	"gitlab.com/imgform/imgform/steps/vm"
)

// guestRunner returns the VM runner for boot, provision and cleanup steps and for the test step: QEMU and SSH.
func guestRunner(engine.Hooks) *vm.Runner { return &vm.Runner{} }

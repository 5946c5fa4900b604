package main

import (
	"gitlab.com/imgform/imgform/engine"
	"gitlab.com/imgform/imgform/steps/vm"
)

// guestRunner returns the VM runner for boot, provision and cleanup steps: QEMU and SSH.
func guestRunner(engine.Hooks) engine.GuestRunner { return &vm.Runner{} }

package main

import (
	"encoding/json"
	"io"

	"gitlab.com/imgform/imgform/engine"
	"gitlab.com/imgform/imgform/steps/vm"
)

// guestRunner returns the VM runner for boot, provision and cleanup steps: QEMU and SSH.
func guestRunner(engine.Hooks) engine.GuestRunner { return &vm.Runner{} }

func newJSONEncoder(w any) *json.Encoder {
	return json.NewEncoder(w.(io.Writer))
}

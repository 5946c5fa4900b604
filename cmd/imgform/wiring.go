package main

import (
	"encoding/json"
	"io"

	"gitlab.com/imgform/imgform/engine"
)

// guestRunner returns the VM runner for boot, provision and cleanup steps.
func guestRunner(engine.Hooks) engine.GuestRunner { return nil }

func newJSONEncoder(w any) *json.Encoder {
	return json.NewEncoder(w.(io.Writer))
}

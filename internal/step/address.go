package step

import "fmt"

// Address names a step: the image, the kind and, for kinds with several steps per image (provisioners,
// outputs), the name. It is what the plan shows and what records and manifests are keyed by (ID).
type Address struct {
	Image string `json:"image"`
	Kind  string `json:"kind"`
	Name  string `json:"name,omitempty"`
}

// ID is the address as one stable string: "debian-12-base/provision/motd". Records and manifests use it;
// nothing parses it back.
func (a Address) ID() string {
	id := a.Image + "/" + a.Kind
	if a.Name != "" {
		id += "/" + a.Name
	}
	return id
}

// Label is how the step is shown to users: fetch, provision "motd", export "qcow2".
func (a Address) Label() string {
	if a.Name != "" {
		return fmt.Sprintf("%s %q", a.Kind, a.Name)
	}
	return a.Kind
}

func (a Address) String() string { return a.ID() }

// Ref is the address as the plan prints it and -replace takes it: "debian-12-base.provision.motd". Names of
// images, kinds and steps hold no dots, so it is unambiguous.
func (a Address) Ref() string {
	ref := a.Image + "." + a.Kind
	if a.Name != "" {
		ref += "." + a.Name
	}
	return ref
}

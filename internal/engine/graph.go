package engine

import (
	"fmt"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/step"
)

// Graph holds every step of a configuration in an order where each step comes after its dependencies.
type Graph struct {
	Steps []*step.Step
	byID  map[string]*step.Step
	// last maps an image name to its last guest step, which derived images and final steps start from.
	last map[string]*step.Step
	// verifiers maps an image name to the step that verifies it (the test), for the images that have one.
	verifiers map[string]*step.Step
}

// Verifier returns the step that verifies an image (its test), or nil when it has none.
func (g *Graph) Verifier(image string) *step.Step { return g.verifiers[image] }

// Step returns the step with the given ID, or nil.
func (g *Graph) Step(id string) *step.Step { return g.byID[id] }

// ImageSteps returns the steps of one image in run order.
func (g *Graph) ImageSteps(image string) []*step.Step {
	var out []*step.Step
	for _, s := range g.Steps {
		if s.Image.Name == image {
			out = append(out, s)
		}
	}
	return out
}

// BuildGraph expands every image into the steps of the kinds, in the kinds' order, which must go by class:
// source, prepare, guest, final. Parents come before derived images; config.Load has already rejected
// unknown parents and cycles, so an error here is a bug in the caller.
func BuildGraph(cfg *config.Config, kinds []step.Kind) (*Graph, error) {
	for i := 1; i < len(kinds); i++ {
		if kinds[i].Class() < kinds[i-1].Class() {
			return nil, fmt.Errorf("step kind %q (class %d) is listed after %q (class %d): list kinds by class", kinds[i].Name(), kinds[i].Class(), kinds[i-1].Name(), kinds[i-1].Class())
		}
	}
	g := &Graph{byID: map[string]*step.Step{}, last: map[string]*step.Step{}, verifiers: map[string]*step.Step{}}
	done := map[string]bool{}
	var visit func(img *config.Image, path []string) error
	visit = func(img *config.Image, path []string) error {
		if done[img.Name] {
			return nil
		}
		for _, p := range path {
			if p == img.Name {
				return fmt.Errorf("images derive from each other: %v", append(path, img.Name))
			}
		}
		var base *step.Step
		if parent := img.Source.Image; parent != "" {
			pimg := cfg.Image(parent)
			if pimg == nil {
				return fmt.Errorf("image %q derives from unknown image %q", img.Name, parent)
			}
			if err := visit(pimg, append(path, img.Name)); err != nil {
				return err
			}
			base = g.last[parent]
		}
		if err := g.addImage(img, base, kinds); err != nil {
			return err
		}
		done[img.Name] = true
		return nil
	}
	for _, img := range cfg.Images {
		if err := visit(img, nil); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// addImage appends the steps of one image; base is the parent image's last guest step for a derived image.
func (g *Graph) addImage(img *config.Image, base *step.Step, kinds []step.Kind) error {
	prev := base // the step the next guest step starts from
	var uses []*step.Step
	var last *step.Step
	for _, k := range kinds {
		for _, inst := range k.Instances(img) {
			s := &step.Step{Addr: step.Address{Image: img.Name, Kind: k.Name(), Name: inst.Name}, Kind: k, Image: img, Config: inst.Config}
			if g.byID[s.Addr.ID()] != nil {
				return fmt.Errorf("image %q has two %s steps", img.Name, s.Label())
			}
			switch k.Class() {
			case step.Source:
				if prev != nil {
					return fmt.Errorf("image %q has two sources (%s)", img.Name, s.Label())
				}
				prev = s
			case step.Prepare:
				uses = append(uses, s)
			case step.Guest:
				if prev == nil {
					return fmt.Errorf("image %q has no source for its %s step", img.Name, s.Label())
				}
				s.Parent, s.Uses = prev, uses
				prev, last = s, s
			case step.Final:
				if last == nil {
					return fmt.Errorf("image %q has no guest step for its %s step to start from", img.Name, s.Label())
				}
				s.Parent = last
				if _, ok := k.(step.Verifier); ok {
					g.verifiers[img.Name] = s
				}
			}
			g.Steps = append(g.Steps, s)
			g.byID[s.Addr.ID()] = s
		}
	}
	if last == nil {
		return fmt.Errorf("image %q has no guest step", img.Name)
	}
	g.last[img.Name] = last
	return nil
}

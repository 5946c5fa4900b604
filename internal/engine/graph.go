package engine

import (
	"fmt"

	"gitlab.com/imgform/imgform/internal/config"
)

// Graph holds every step of a configuration in an order where each step comes after its dependencies.
type Graph struct {
	Steps []*Step
	byID  map[string]*Step
	// last maps an image name to its last disk step (cleanup), which derived images and exports start from.
	last map[string]*Step
	// tests maps an image name to its test step, for the images that have one.
	tests map[string]*Step
}

// Test returns the test step of an image, or nil when it has none.
func (g *Graph) Test(image string) *Step { return g.tests[image] }

// Step returns the step with the given ID, or nil.
func (g *Graph) Step(id string) *Step { return g.byID[id] }

// ImageSteps returns the steps of one image in run order.
func (g *Graph) ImageSteps(image string) []*Step {
	var out []*Step
	for _, s := range g.Steps {
		if s.Image.Name == image {
			out = append(out, s)
		}
	}
	return out
}

// BuildGraph expands every image into its steps. Parents come before derived images; config.Load has
// already rejected unknown parents and cycles, so an error here is a bug in the caller.
func BuildGraph(cfg *config.Config) (*Graph, error) {
	g := &Graph{byID: map[string]*Step{}, last: map[string]*Step{}, tests: map[string]*Step{}}
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
		var base *Step
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
		g.addImage(img, base)
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

func (g *Graph) add(s *Step) *Step {
	g.Steps = append(g.Steps, s)
	g.byID[s.ID] = s
	return s
}

// addImage appends the steps of one image; base is the parent image's last step for a derived image.
func (g *Graph) addImage(img *config.Image, base *Step) {
	id := func(parts ...string) string {
		s := img.Name
		for _, p := range parts {
			s += "/" + p
		}
		return s
	}
	if base == nil {
		base = g.add(&Step{ID: id(string(KindFetch)), Kind: KindFetch, Image: img})
	}
	seed := g.add(&Step{ID: id(string(KindSeed)), Kind: KindSeed, Image: img})
	prev := g.add(&Step{ID: id(string(KindBoot)), Kind: KindBoot, Image: img, Parent: base, Seed: seed})
	for _, p := range img.Provisioners {
		prev = g.add(&Step{ID: id(string(KindProvision), p.Name), Kind: KindProvision, Name: p.Name, Image: img,
			Parent: prev, Seed: seed, Provisioner: p})
	}
	cleanup := g.add(&Step{ID: id(string(KindCleanup)), Kind: KindCleanup, Image: img, Parent: prev, Seed: seed})
	g.last[img.Name] = cleanup
	for _, o := range img.Outputs {
		g.add(&Step{ID: id(string(KindExport), o.Name), Kind: KindExport, Name: o.Name, Image: img, Parent: cleanup, Output: o})
	}
	// The test boots the same final layer the exports convert, so it runs beside them, not after them.
	if img.HasTestStep() {
		g.tests[img.Name] = g.add(&Step{ID: id(string(KindTest)), Kind: KindTest, Image: img, Parent: cleanup})
	}
}

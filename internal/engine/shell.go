package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// GuestLayer is the cached layer of a guest step and the seed its image boots with, held against gc and
// cache verify -remove until Release (imgform shell).
type GuestLayer struct {
	Image *config.Image
	Step  step.Address
	Label string
	Layer *state.Object
	Seed  *state.Object
	hold  *state.Hold
}

// Release lets gc remove the layer again.
func (g *GuestLayer) Release() error { return g.hold.Release() }

// GuestLayer plans cfg against the local cache and returns the layer of a guest step of an image. image
// may be empty when the configuration has one image; sel names the step (as plan shows it: boot,
// provision/motd, provision.motd, `provision "motd"`, or motd when that is unique) or is empty for the last
// guest step of the image whose layer is in the cache.
func (e *Engine) GuestLayer(ctx context.Context, cfg *config.Config, image, sel string) (*GuestLayer, error) {
	p, err := e.makePlan(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	img, err := pickImage(cfg, image)
	if err != nil {
		return nil, err
	}
	var guest []*step.Step
	for _, s := range p.graph.ImageSteps(img.Name) {
		if _, ok := s.Kind.(step.GuestKind); ok {
			guest = append(guest, s)
		}
	}
	var chosen *step.Step
	if sel == "" {
		for _, s := range guest {
			if p.present[s] {
				chosen = s
			}
		}
		if chosen == nil {
			return nil, fmt.Errorf("image %q has no guest step in the cache yet: run imgform apply first", img.Name)
		}
	} else if chosen, err = pickStep(img.Name, guest, sel); err != nil {
		return nil, err
	}
	if !p.present[chosen] {
		return nil, fmt.Errorf("%s of image %q is not in the cache (its key %s has no result): run imgform apply first, "+
			"or pick a step that plan shows as cached", chosen.Label(), img.Name, chosen.Key.Short())
	}
	layer, seed, err := e.layerAndSeed(chosen)
	if err != nil {
		return nil, err
	}
	hold, err := e.Store.Hold(ctx, layer.Key, seed.Key)
	if err != nil {
		return nil, err
	}
	return &GuestLayer{Image: img, Step: chosen.Addr, Label: chosen.Label(), Layer: layer, Seed: seed, hold: hold}, nil
}

// layerAndSeed looks up a guest step's layer and the seed of its chain (the Uses of the step that started it).
func (e *Engine) layerAndSeed(s *step.Step) (layer, seed *state.Object, err error) {
	layer, ok, err := e.Store.Lookup(s.Key)
	if err != nil || !ok {
		return nil, nil, errors.Join(fmt.Errorf("%s: no layer in the cache", s.Label()), err)
	}
	for t := s; t != nil; t = t.Parent {
		for _, u := range t.Uses {
			obj, ok, err := e.Store.Lookup(u.Key)
			if err != nil {
				return nil, nil, err
			}
			if !ok {
				continue
			}
			if _, isSeed := obj.File(step.SeedFile); isSeed {
				return layer, obj, nil
			}
		}
	}
	return nil, nil, fmt.Errorf("%s: the seed its image boots with is not in the cache: run imgform apply first", s.Label())
}

func pickImage(cfg *config.Config, name string) (*config.Image, error) {
	var names []string
	for _, img := range cfg.Images {
		if img.Name == name || (name == "" && len(cfg.Images) == 1) {
			return img, nil
		}
		names = append(names, img.Name)
	}
	if name == "" {
		return nil, fmt.Errorf("the configuration has %d images; choose one with -image (%s)", len(names), strings.Join(names, ", "))
	}
	return nil, fmt.Errorf("no image %q in the configuration (images: %s)", name, strings.Join(names, ", "))
}

// pickStep finds the guest step sel names (see GuestLayer).
func pickStep(image string, guest []*step.Step, sel string) (*step.Step, error) {
	var byName []*step.Step
	var known []string
	for _, s := range guest {
		id := strings.TrimPrefix(s.Addr.ID(), image+"/")
		forms := []string{s.Addr.ID(), id, strings.ReplaceAll(s.Addr.ID(), "/", "."), strings.ReplaceAll(id, "/", "."), s.Label()}
		for _, f := range forms {
			if f == sel {
				return s, nil
			}
		}
		if s.Addr.Name == sel {
			byName = append(byName, s)
		}
		known = append(known, id)
	}
	if len(byName) == 1 {
		return byName[0], nil
	}
	return nil, fmt.Errorf("image %q has no guest step %q; its guest steps are %s", image, sel, strings.Join(known, ", "))
}

package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"sort"
	"strings"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// Rebuilds: -replace and refresh_every make a step build again although its key is cached. The store never
// replaces an object (the layers built on it, by this configuration or another, back onto its files), so a
// rebuilt step gets a new key instead: a rebuild token enters its key as one more input, and the keys of
// everything that builds on it change with it. The record keeps the token, so the next plan makes the same
// key and finds the new result cached.
//
// A refresh's token is derived from the key it replaces ("after <key>"), not random: two machines that
// share a remote cache and refresh the same stale result make the same new key, so the second one pulls
// what the first built. A -replace token is random: the user asked for a new build, whatever exists.

// maxRefreshChain bounds the walk from a recorded token through newer refreshes of the same step that
// other machines built (one per refresh period).
const maxRefreshChain = 1000

// rebuildInput names the rebuild token in keys and records.
const rebuildInput = "rebuild"

// keyStep computes the key of s with the rebuild token, if any.
func keyStep(ctx context.Context, kc *step.KeyContext, s *step.Step, token string) error {
	b := step.NewKeyBuilder(kc, s)
	if err := s.Kind.Key(ctx, kc, s, b); err != nil {
		return err
	}
	if token != "" {
		b.Add(step.InputRebuild, rebuildInput, []byte(token))
	}
	var err error
	s.Key, s.Inputs, err = b.Sum()
	s.Sensitive = b.Sensitive()
	return err
}

// refreshRule is the freshness rule of a step and where it comes from: a kind's own (a provisioner's
// refresh_every), else the image's for its first guest step.
func refreshRule(g *Graph, s *step.Step) (time.Duration, string) {
	if r, ok := s.Kind.(step.Refresher); ok {
		if d := r.RefreshEvery(s); d > 0 {
			return d, "refresh_every"
		}
	}
	if s.Image.RefreshEvery > 0 && s.IsGuest() && firstGuestStep(g, s.Image.Name) == s {
		return s.Image.RefreshEvery, fmt.Sprintf("image %q's refresh_every", s.Image.Name)
	}
	return 0, ""
}

func firstGuestStep(g *Graph, image string) *step.Step {
	for _, s := range g.ImageSteps(image) {
		if s.IsGuest() {
			return s
		}
	}
	return nil
}

// keyAll computes every key in graph order with the rebuild tokens: the recorded one, a new random one for
// a step named by -replace, and for a step with a freshness rule one derived from each result that turns
// out older than the rule. It returns the tokens (for the record) and why each forced step runs.
func (e *Engine) keyAll(ctx context.Context, kc *step.KeyContext, g *Graph, rec *state.Record) (map[*step.Step]string, map[*step.Step]string, error) {
	replace, err := e.replaced(g)
	if err != nil {
		return nil, nil, err
	}
	tokens, forced := map[*step.Step]string{}, map[*step.Step]string{}
	for _, s := range g.Steps {
		token := ""
		if sr := rec.Image(s.Image.Name).Step(s.Addr.ID()); sr != nil {
			token = sr.Rebuild
		}
		if replace[s] {
			token = "replace " + rand.Text()
			forced[s] = fmt.Sprintf("-replace=%s: built again, under a new key", s.Addr.Ref())
		}
		if err := keyStep(ctx, kc, s, token); err != nil {
			return nil, nil, err
		}
		if every, rule := refreshRule(g, s); every > 0 && !replace[s] {
			for i := 0; i < maxRefreshChain; i++ {
				created, ok, err := e.resultTime(ctx, s.Key)
				if err != nil {
					return nil, nil, err
				}
				age := e.now().Sub(created)
				if !ok || age <= every {
					break
				}
				token = "after " + s.Key.String()
				forced[s] = fmt.Sprintf("built %s ago, older than %s = %q", config.FormatAge(age.Truncate(time.Minute)), rule, config.FormatAge(every))
				if err := keyStep(ctx, kc, s, token); err != nil {
					return nil, nil, err
				}
			}
		}
		if token != "" {
			tokens[s] = token
		}
	}
	return tokens, forced, nil
}

// resultTime is when the result for key was built: in the store, else in the remote cache.
func (e *Engine) resultTime(ctx context.Context, key state.Key) (time.Time, bool, error) {
	obj, ok, err := e.Store.Lookup(key)
	if err != nil || ok {
		if obj == nil {
			return time.Time{}, false, err
		}
		return obj.Created, true, nil
	}
	if e.Remote == nil {
		return time.Time{}, false, nil
	}
	hits, err := e.Remote.StatMany(ctx, []state.Key{key})
	if err != nil {
		// Plan goes on without the remote (lookupRemote warns); a refresh decided without it is the local one.
		return time.Time{}, false, nil
	}
	h, ok := hits[key]
	return h.Meta.Created, ok, nil
}

// replaced resolves -replace addresses ("image.kind.name") to steps; an unknown address is an error that
// lists the ones of the closest image.
func (e *Engine) replaced(g *Graph) (map[*step.Step]bool, error) {
	out := map[*step.Step]bool{}
	for _, ref := range e.Replace {
		var found *step.Step
		for _, s := range g.Steps {
			if s.Addr.Ref() == ref {
				found = s
			}
		}
		if found == nil {
			return nil, fmt.Errorf("-replace=%s: no such step; %s", ref, addressHint(g, ref))
		}
		out[found] = true
	}
	return out, nil
}

// addressHint lists the addresses a -replace can name, those of the image the wrong one starts with when
// there is one.
func addressHint(g *Graph, ref string) string {
	image, _, _ := strings.Cut(ref, ".")
	var refs []string
	for _, s := range g.Steps {
		if s.Image.Name == image {
			refs = append(refs, s.Addr.Ref())
		}
	}
	if len(refs) == 0 {
		for _, s := range g.Steps {
			refs = append(refs, s.Addr.Ref())
		}
	}
	sort.Strings(refs)
	return "addresses are IMAGE.KIND[.NAME], as plan prints them: " + strings.Join(refs, ", ")
}

package engine

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"gitlab.com/imgform/imgform/internal/config"
)

// selection is what -only and -except leave in a plan: the chosen images and the images they derive from
// (planned as well, whole, since a derived image starts from its parent's last layer). nil means every
// image.
type selection struct {
	chosen map[string]bool
	// neededBy maps an image that was not chosen but is planned to the chosen images that derive from it.
	neededBy map[string][]string
	flag     string // "-only" or "-except", for the words of the plan
}

// selectImages resolves -only and -except against the configuration's images. A pattern that matches no
// image is an error naming the images there are: a typo must not silently build nothing, or everything.
func (e *Engine) selectImages(cfg *config.Config) (*selection, error) {
	if len(e.Only) == 0 && len(e.Except) == 0 {
		return nil, nil
	}
	var names []string
	for _, img := range cfg.Images {
		names = append(names, img.Name)
	}
	match := func(flag string, patterns []string) (map[string]bool, error) {
		out := map[string]bool{}
		for _, pat := range patterns {
			n := 0
			for _, name := range names {
				ok, err := path.Match(pat, name)
				if err != nil {
					return nil, fmt.Errorf("%s=%s: %w", flag, pat, err)
				}
				if ok {
					out[name], n = true, n+1
				}
			}
			if n == 0 {
				sorted := append([]string(nil), names...)
				sort.Strings(sorted)
				return nil, fmt.Errorf("%s=%s matches no image; the images are %s", flag, pat, strings.Join(sorted, ", "))
			}
		}
		return out, nil
	}
	sel := &selection{chosen: map[string]bool{}, neededBy: map[string][]string{}, flag: "-only"}
	only, err := match("-only", e.Only)
	if err != nil {
		return nil, err
	}
	except, err := match("-except", e.Except)
	if err != nil {
		return nil, err
	}
	switch {
	case len(e.Only) == 0:
		sel.flag = "-except"
	case len(e.Except) > 0:
		sel.flag = "-only and -except"
	}
	for _, name := range names {
		if (len(e.Only) == 0 || only[name]) && !except[name] {
			sel.chosen[name] = true
		}
	}
	if len(sel.chosen) == 0 {
		return nil, fmt.Errorf("-only and -except leave no image to build")
	}
	for _, name := range names {
		if !sel.chosen[name] {
			continue
		}
		for parent := cfg.Image(name).Source.Image; parent != ""; parent = cfg.Image(parent).Source.Image {
			if !sel.chosen[parent] {
				sel.neededBy[parent] = append(sel.neededBy[parent], name)
			}
		}
	}
	for _, v := range sel.neededBy {
		sort.Strings(v)
	}
	return sel, nil
}

// has tells whether an image is planned.
func (s *selection) has(image string) bool {
	return s == nil || s.chosen[image] || len(s.neededBy[image]) > 0
}

// note is the plan's word on an image that was not chosen: why it is planned anyway, or that it is left out.
func (s *selection) note(image string) string {
	switch {
	case s == nil || s.chosen[image]:
		return ""
	case len(s.neededBy[image]) > 0:
		return fmt.Sprintf("planned as well: %s derive(s) from it", strings.Join(quoteAll(s.neededBy[image]), ", "))
	default:
		return "left out by " + s.flag
	}
}

// why is the reason a step of an image that is left out does not run.
func (s *selection) why(image string) string {
	return fmt.Sprintf("image %q is left out by %s", image, s.flag)
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fmt.Sprintf("%q", n)
	}
	return out
}

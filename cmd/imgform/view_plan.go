package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"gitlab.com/imgform/imgform/internal/engine"
)

// renderPlan prints a plan for people: per image, each step with what apply will do and why.
func renderPlan(w io.Writer, p *engine.Plan) error {
	var b strings.Builder
	width := 28
	for _, ip := range p.Images {
		for _, sp := range ip.Steps {
			width = max(width, len(sp.Ref))
		}
	}
	for _, ip := range p.Images {
		fmt.Fprintf(&b, "image %q\n", ip.Name)
		if ip.Selection != "" {
			fmt.Fprintf(&b, "  (%s)\n", ip.Selection)
		}
		if ip.LeftOut {
			b.WriteString("\n")
			continue
		}
		for _, sp := range ip.Steps {
			mark := map[engine.Action]string{engine.ActionRun: "+", engine.ActionCached: "=", engine.ActionSkip: "-"}[sp.Action]
			action := string(sp.Action)
			if sp.Remote != nil {
				action = fmt.Sprintf("cached (remote, %s)", humanSize(sp.Remote.Size))
			}
			line := fmt.Sprintf("  %s %-*s %-6s %s", mark, width, sp.Ref, action, sp.Key[:12])
			if sp.Output != "" {
				line += "  -> " + sp.Output
			}
			if len(sp.Downloads) > 0 {
				line += "  -> " + strings.Join(sp.Downloads, ", ")
			}
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			if sp.Action == engine.ActionRun || sp.Verifies {
				for _, r := range sp.Reasons {
					fmt.Fprintf(&b, "      %s\n", r)
				}
			}
		}
		b.WriteString("\n")
	}
	if p.ToRun == 0 {
		fmt.Fprintf(&b, "No changes: every step is cached (%d steps). apply would run nothing", p.Cached)
		if p.CachedRemote > 0 {
			fmt.Fprintf(&b, " but download %d result(s) from the remote cache", p.CachedRemote)
		}
		b.WriteString(".\n")
	} else {
		fmt.Fprintf(&b, "Plan: %d to run, %d cached", p.ToRun, p.Cached)
		if p.CachedRemote > 0 {
			fmt.Fprintf(&b, " (%d from the remote cache)", p.CachedRemote)
		}
		if p.Skipped > 0 {
			fmt.Fprintf(&b, ", %d not needed", p.Skipped)
		}
		b.WriteString(".\n")
	}
	if p.SkipTests {
		b.WriteString("Tests will be skipped (-skip-tests): outputs that are not tested already are marked unverified.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func renderPlanJSON(w io.Writer, p *engine.Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

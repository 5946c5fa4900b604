package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"gitlab.com/imgform/imgform/internal/engine"
	"gitlab.com/imgform/imgform/internal/kinds"
	"gitlab.com/imgform/imgform/internal/step"
)

func graphCommand() *cli.Command {
	vars := &varArgs{}
	return &cli.Command{
		Name:      "graph",
		Usage:     "print the step graph in Graphviz DOT: imgform graph | dot -Tsvg > graph.svg",
		ArgsUsage: "[DIR]",
		Description: "Prints every step of the configuration as a node, named by its address (as plan prints it and " +
			"-replace takes it), one cluster per image, and an edge from each step to the steps that start from " +
			"its result (solid) or use it (dashed: the seed a guest session needs). Nothing is looked up or run.",
		Flags: varFlags(vars),
		Action: func(c *cli.Context) error {
			cfg, err := loadDirConfig(c, vars)
			if err != nil {
				return err
			}
			g, err := engine.BuildGraph(cfg, kinds.All())
			if err != nil {
				return err
			}
			return writeDOT(c.App.Writer, g)
		},
	}
}

// writeDOT prints the graph: a cluster per image in the configuration's order, steps in run order.
func writeDOT(w io.Writer, g *engine.Graph) error {
	var b strings.Builder
	b.WriteString("digraph imgform {\n  rankdir = \"LR\";\n  node [shape = \"box\"];\n")
	var images []string
	seen := map[string]bool{}
	for _, s := range g.Steps {
		if !seen[s.Image.Name] {
			seen[s.Image.Name] = true
			images = append(images, s.Image.Name)
		}
	}
	for i, img := range images {
		fmt.Fprintf(&b, "  subgraph \"cluster_%d\" {\n    label = %s;\n", i, dotQuote("image "+img))
		for _, s := range g.ImageSteps(img) {
			fmt.Fprintf(&b, "    %s [label = %s];\n", dotQuote(s.Addr.Ref()), dotQuote(s.Label()))
		}
		b.WriteString("  }\n")
	}
	for _, s := range g.Steps {
		if s.Parent != nil {
			fmt.Fprintf(&b, "  %s -> %s;\n", dotQuote(s.Parent.Addr.Ref()), dotQuote(s.Addr.Ref()))
		}
		// The seed is used by the whole guest session: one edge to the session's first step says it.
		first := s.Parent == nil || s.Parent.Image != s.Image || !s.Parent.IsGuest()
		for _, u := range s.Uses {
			if first && s.IsGuest() && u.Kind.Class() == step.Prepare {
				fmt.Fprintf(&b, "  %s -> %s [style = \"dashed\"];\n", dotQuote(u.Addr.Ref()), dotQuote(s.Addr.Ref()))
			}
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// dotQuote writes s as a DOT string: quoted, with quotes and backslashes escaped.
func dotQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

package config

import (
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// varRefs lists the variables a block uses, following locals to the variables they use, so that plan can say
// "variable packages changed" for exactly the steps that read it.
func varRefs(body hcl.Body, localVars map[string][]string) []string {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	set := map[string]bool{}
	_ = hclsyntax.VisitAll(sb, func(n hclsyntax.Node) hcl.Diagnostics {
		expr, ok := n.(*hclsyntax.ScopeTraversalExpr)
		if !ok {
			return nil
		}
		addTraversalVars(expr.Traversal, localVars, set)
		return nil
	})
	return sortedSet(set)
}

func exprVarRefs(expr hcl.Expression, localVars map[string][]string) []string {
	set := map[string]bool{}
	for _, tr := range expr.Variables() {
		addTraversalVars(tr, localVars, set)
	}
	return sortedSet(set)
}

func addTraversalVars(tr hcl.Traversal, localVars map[string][]string, set map[string]bool) {
	if len(tr) < 2 {
		return
	}
	step, ok := tr[1].(hcl.TraverseAttr)
	if !ok {
		return
	}
	switch tr.RootName() {
	case "var":
		set[step.Name] = true
	case "local":
		for _, v := range localVars[step.Name] {
			set[v] = true
		}
	}
}

func sortedSet(set map[string]bool) []string {
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

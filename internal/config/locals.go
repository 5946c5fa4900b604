package config

import (
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// evalLocals evaluates every attribute of every locals block in dependency order: a local may use another one,
// wherever it is declared, as long as there is no cycle.
// It also returns, per local, the variables it uses directly or through other locals.
func evalLocals(blocks []*hcl.Block, ctx *hcl.EvalContext) (map[string]cty.Value, map[string][]string, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	localVars := map[string][]string{}
	pending := map[string]*hcl.Attribute{}
	for _, b := range blocks {
		attrs, aDiags := b.Body.JustAttributes()
		diags = append(diags, aDiags...)
		for name, attr := range attrs {
			if prev, ok := pending[name]; ok {
				diags = append(diags, errorAt(attr.NameRange, "Duplicate local value",
					"local.%s is already defined at %s. Each local value must be defined once.", name, Pos(prev.NameRange)))
				continue
			}
			pending[name] = attr
		}
	}

	values := map[string]cty.Value{}
	for len(pending) > 0 {
		progress := false
		for _, name := range sortedKeys(pending) {
			attr := pending[name]
			if !localDepsReady(attr, values, pending) {
				continue
			}
			child := ctx.NewChild()
			child.Variables = map[string]cty.Value{"local": cty.ObjectVal(values)}
			val, vDiags := attr.Expr.Value(child)
			diags = append(diags, vDiags...)
			if vDiags.HasErrors() {
				val = cty.DynamicVal
			}
			values[name] = val
			localVars[name] = exprVarRefs(attr.Expr, localVars)
			delete(pending, name)
			progress = true
		}
		if progress {
			continue
		}
		// Nothing could be evaluated: what is left references a missing local or forms a cycle.
		names := sortedKeys(pending)
		for _, name := range names {
			for _, tr := range pending[name].Expr.Variables() {
				ref := localRef(tr)
				if ref == "" {
					continue
				}
				if _, ok := values[ref]; !ok {
					if _, ok := pending[ref]; !ok {
						all := append(sortedKeys(values), names...)
						sort.Strings(all)
						diags = append(diags, errorAt(tr.SourceRange(), "Reference to undeclared local value",
							"No local value %q is defined.%s", ref, suggestName(ref, all)))
					}
				}
			}
		}
		if !diags.HasErrors() {
			diags = append(diags, errorAt(pending[names[0]].NameRange, "Cycle between local values",
				"These local values depend on each other: %s. Break the cycle.", "local."+strings.Join(names, ", local.")))
		}
		for _, name := range names {
			values[name] = cty.DynamicVal
		}
		break
	}
	return values, localVars, diags
}

func localDepsReady(attr *hcl.Attribute, done map[string]cty.Value, pending map[string]*hcl.Attribute) bool {
	for _, tr := range attr.Expr.Variables() {
		if ref := localRef(tr); ref != "" {
			if _, ok := done[ref]; !ok {
				return false
			}
		}
	}
	return true
}

// localRef returns NAME for a traversal local.NAME..., else "".
func localRef(tr hcl.Traversal) string {
	if tr.RootName() != "local" || len(tr) < 2 {
		return ""
	}
	if a, ok := tr[1].(hcl.TraverseAttr); ok {
		return a.Name
	}
	return ""
}

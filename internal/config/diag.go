package config

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

var (
	namePattern     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)
	unitNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@-]*$`)
)

// checkName rejects names that would not work as references (image.NAME) or file names. Network units are
// files whose names by convention start with a number ("50-default"), so they get the file name rule.
func checkName(kind, name string, rng hcl.Range) hcl.Diagnostics {
	if kind == "network" {
		if unitNamePattern.MatchString(name) && len(name) <= 200 {
			return nil
		}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid network name",
			Detail:   fmt.Sprintf("%q is not a valid unit file name: use letters, digits, dots, dashes and underscores, like \"50-default\".", name),
			Subject:  rng.Ptr(),
		}}
	}
	if namePattern.MatchString(name) {
		return nil
	}
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Invalid %s name", kind),
		Detail:   fmt.Sprintf("%q is not a valid %s name: start with a letter and use only letters, digits, underscores and dashes.", name, kind),
		Subject:  rng.Ptr(),
	}}
}

// Pos renders where a range starts as file:line:col, the form editors jump to.
func Pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

// suggestName returns " Did you mean "x"?" for the closest candidate, or "".
func suggestName(given string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(strings.ToLower(given), strings.ToLower(c), nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

func errorAt(rng hcl.Range, summary, detail string, args ...any) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detail, args...),
		Subject:  rng.Ptr(),
	}
}

// WriteDiagnostics prints diagnostics with file:line:col, a source snippet and the detail, like
// terraform validate, with sensitive values redacted.
func (l *Loader) WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, width uint, color bool) error {
	redacted := make(hcl.Diagnostics, 0, len(diags))
	for _, d := range diags {
		c := *d
		c.Summary = redact(l.secrets, c.Summary)
		c.Detail = redact(l.secrets, c.Detail)
		redacted = append(redacted, &c)
	}
	// hcl's writer prints "Error: summary", a snippet and the detail; editors and terminals jump to a
	// "file:line:col:" prefix, so each diagnostic's first line is replaced by one.
	for _, d := range redacted {
		var sb strings.Builder
		wr := hcl.NewDiagnosticTextWriter(&sb, l.parser.Files(), width, color)
		if err := wr.WriteDiagnostic(d); err != nil {
			return err
		}
		text := strings.TrimLeft(sb.String(), "\n")
		if _, rest, ok := strings.Cut(text, "\n"); ok {
			text = rest
		}
		header := headerLine(d)
		// The snippet may show a literal secret written in a var file; redact the whole text once more.
		if _, err := io.WriteString(w, redact(l.secrets, header+"\n"+strings.TrimRight(text, "\n")+"\n\n")); err != nil {
			return err
		}
	}
	return nil
}

func headerLine(d *hcl.Diagnostic) string {
	sev := "Error"
	if d.Severity == hcl.DiagWarning {
		sev = "Warning"
	}
	if d.Subject == nil {
		return fmt.Sprintf("%s: %s", sev, d.Summary)
	}
	return fmt.Sprintf("%s: %s: %s", Pos(*d.Subject), sev, d.Summary)
}

// FormatShort renders one line per diagnostic, "file:line:col: summary: detail", for logs and tests.
func FormatShort(d *hcl.Diagnostic) string {
	pos := ""
	if d.Subject != nil {
		pos = Pos(*d.Subject) + ": "
	}
	sev := "error"
	if d.Severity == hcl.DiagWarning {
		sev = "warning"
	}
	return fmt.Sprintf("%s%s: %s; %s", pos, sev, d.Summary, d.Detail)
}

// shortError renders the errors among diags as one error, a FormatShort line each joined by "; ". Unlike
// hcl.Diagnostics.Error it never prints "<nil>" for a diagnostic without a source range.
func shortError(diags hcl.Diagnostics) error {
	var lines []string
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			lines = append(lines, FormatShort(d))
		}
	}
	return errors.New(strings.Join(lines, "; "))
}

// refineReferenceErrors rewrites hcl's generic "This object does not have an attribute named x" for var.x,
// local.x and image.x into what the user got wrong, with the closest declared name.
func refineReferenceErrors(diags hcl.Diagnostics, ctx *hcl.EvalContext) {
	for _, d := range diags {
		expr, ok := d.Expression.(*hclsyntax.ScopeTraversalExpr)
		if !ok || d.Summary != "Unsupported attribute" || len(expr.Traversal) < 2 {
			continue
		}
		root := expr.Traversal.RootName()
		step, ok := expr.Traversal[1].(hcl.TraverseAttr)
		if !ok {
			continue
		}
		var names []string
		if obj, ok := ctx.Variables[root]; ok && obj.Type().IsObjectType() {
			for n := range obj.Type().AttributeTypes() {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		hint := suggestName(step.Name, names)
		switch root {
		case "var":
			d.Summary = "Reference to undeclared input variable"
			d.Detail = fmt.Sprintf("No variable %q is declared.%s To add one, write variable %q { type = string }.", step.Name, hint, step.Name)
		case "local":
			d.Summary = "Reference to undeclared local value"
			d.Detail = fmt.Sprintf("No local value %q is defined in a locals block.%s", step.Name, hint)
		case "image":
			d.Summary = "Reference to unknown image"
			d.Detail = fmt.Sprintf("No image %q is declared.%s", step.Name, hint)
		}
	}
}

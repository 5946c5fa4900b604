package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// EnvVarPrefix is the prefix of environment variables that set input variables: IMGFORM_VAR_admin_user=alice.
const EnvVarPrefix = "IMGFORM_VAR_"

// sensitiveMark marks values of sensitive variables; cty carries it through every function and operator, so
// anything computed from a secret is known to be secret too.
const sensitiveMark = "sensitive"

// VarArg is one -var NAME=VALUE or -var-file FILE argument; the command line keeps their order because a
// later one wins, as in Packer and Terraform.
type VarArg struct {
	Name  string // set for -var
	Value string
	File  string // set for -var-file
}

// ParseVarFlag splits "NAME=VALUE" as given to -var.
func ParseVarFlag(s string) (VarArg, error) {
	name, value, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return VarArg{}, fmt.Errorf("-var %q: expected NAME=VALUE, e.g. -var admin_user=alice", s)
	}
	return VarArg{Name: name, Value: value}, nil
}

type variableDecl struct {
	v          *Variable
	def        cty.Value // default, or cty.NilVal
	badDefault bool      // the default was reported as invalid; do not also report a missing value
	defaults   *typeexpr.Defaults
	validation []*validationRule
}

type validationRule struct {
	condition    hcl.Expression
	errorMessage hcl.Expression
	declRange    hcl.Range
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "default"}, {Name: "description"}, {Name: "sensitive"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "condition", Required: true}, {Name: "error_message", Required: true},
	},
}

func decodeVariable(block *hcl.Block) (*variableDecl, hcl.Diagnostics) {
	name := block.Labels[0]
	d := &variableDecl{v: &Variable{Name: name, Type: cty.DynamicPseudoType, DeclRange: block.DefRange}}
	diags := checkName("variable", name, block.LabelRanges[0])
	content, moreDiags := block.Body.Content(variableSchema)
	diags = append(diags, moreDiags...)

	if attr, ok := content.Attributes["type"]; ok {
		ty, defaults, tyDiags := typeexpr.TypeConstraintWithDefaults(attr.Expr)
		diags = append(diags, tyDiags...)
		if !tyDiags.HasErrors() {
			d.v.Type, d.defaults = ty, defaults
		}
	}
	if attr, ok := content.Attributes["description"]; ok {
		diags = append(diags, decodeStatic(attr, cty.String, func(v cty.Value) { d.v.Description = v.AsString() })...)
	}
	if attr, ok := content.Attributes["sensitive"]; ok {
		diags = append(diags, decodeStatic(attr, cty.Bool, func(v cty.Value) { d.v.Sensitive = v.True() })...)
	}
	if attr, ok := content.Attributes["default"]; ok {
		val, valDiags := attr.Expr.Value(nil)
		diags = append(diags, valDiags...)
		if !valDiags.HasErrors() {
			if d.defaults != nil {
				val = d.defaults.Apply(val)
			}
			conv, err := convert.Convert(val, d.v.Type)
			if err != nil {
				d.badDefault = true
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid default value for variable",
					Detail:   fmt.Sprintf("The default of variable %q does not fit its type %s: %s.", name, typeexpr.TypeString(d.v.Type), err),
					Subject:  attr.Expr.Range().Ptr(),
				})
			} else {
				d.def = conv
			}
		}
	}
	for _, vb := range content.Blocks {
		vc, vDiags := vb.Body.Content(validationSchema)
		diags = append(diags, vDiags...)
		if vDiags.HasErrors() {
			continue
		}
		d.validation = append(d.validation, &validationRule{
			condition:    vc.Attributes["condition"].Expr,
			errorMessage: vc.Attributes["error_message"].Expr,
			declRange:    vb.DefRange,
		})
	}
	return d, diags
}

// decodeStatic evaluates an attribute that may not reference anything (a literal) and converts it.
func decodeStatic(attr *hcl.Attribute, ty cty.Type, set func(cty.Value)) hcl.Diagnostics {
	val, diags := attr.Expr.Value(nil)
	if diags.HasErrors() {
		return diags
	}
	conv, err := convert.Convert(val, ty)
	if err != nil || conv.IsNull() {
		why := "it is null"
		if err != nil {
			why = err.Error()
		}
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid value for %q", attr.Name),
			Detail:   fmt.Sprintf("%q must be a %s: %s.", attr.Name, ty.FriendlyName(), why),
			Subject:  attr.Expr.Range().Ptr(),
		}}
	}
	set(conv)
	return nil
}

// assignVariables gives every declared variable its value. Precedence, lowest first, as in Packer: the
// default, IMGFORM_VAR_<name> from the environment, *.auto.imgvars.hcl files in the folder (sorted), then the
// -var and -var-file arguments in the order given.
func (l *Loader) assignVariables(decls map[string]*variableDecl, dir string, opts LoadOptions) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, d := range decls {
		if d.def != cty.NilVal {
			d.v.Value, d.v.Origin = d.def, "default"
		}
	}

	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	for _, kv := range env {
		k, raw, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvVarPrefix) {
			continue
		}
		name := strings.TrimPrefix(k, EnvVarPrefix)
		d, ok := decls[name]
		if !ok {
			// Unknown environment variables are ignored: the environment is shared with other configurations.
			continue
		}
		diags = append(diags, setFromString(d, raw, "environment variable "+k)...)
	}

	autoFiles, _ := filepath.Glob(filepath.Join(dir, "*.auto.imgvars.hcl"))
	sort.Strings(autoFiles)
	for _, f := range autoFiles {
		diags = append(diags, l.setFromFile(decls, f)...)
	}

	for _, a := range opts.Vars {
		if a.File != "" {
			diags = append(diags, l.setFromFile(decls, a.File)...)
			continue
		}
		d, ok := decls[a.Name]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Value for undeclared variable",
				Detail:   fmt.Sprintf("-var %s=...: no variable %q is declared in this configuration.%s", a.Name, a.Name, suggestName(a.Name, declNames(decls))),
			})
			continue
		}
		diags = append(diags, setFromString(d, a.Value, "-var "+a.Name)...)
	}

	for _, d := range decls {
		if d.v.Value == cty.NilVal && !d.badDefault {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("No value for variable %q", d.v.Name),
				Detail: fmt.Sprintf("Variable %q has no default. Give it a value with -var %s=VALUE, in a -var-file, "+
					"or with the environment variable %s%s, or add a default to its declaration.",
					d.v.Name, d.v.Name, EnvVarPrefix, d.v.Name),
				Subject: d.v.DeclRange.Ptr(),
			})
		}
	}
	return diags
}

// setFromString parses a value given on the command line or in the environment: a string variable takes the
// text as it is, any other type reads it as an HCL expression (["a", "b"], { k = 1 }, 42, true).
func setFromString(d *variableDecl, raw, origin string) hcl.Diagnostics {
	var val cty.Value
	if d.v.Type == cty.String || d.v.Type == cty.DynamicPseudoType {
		val = cty.StringVal(raw)
	} else {
		expr, diags := hclsyntax.ParseExpression([]byte(raw), origin, hcl.InitialPos)
		if diags.HasErrors() {
			return hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Invalid value for variable %q", d.v.Name),
				Detail:   fmt.Sprintf("The value from %s is not a valid %s expression: %s.", origin, typeexpr.TypeString(d.v.Type), diags[0].Summary),
			}}
		}
		v, vDiags := expr.Value(nil)
		if vDiags.HasErrors() {
			return vDiags
		}
		val = v
	}
	return setValue(d, val, origin, nil)
}

func setValue(d *variableDecl, val cty.Value, origin string, subject *hcl.Range) hcl.Diagnostics {
	if d.defaults != nil {
		val = d.defaults.Apply(val)
	}
	conv, err := convert.Convert(val, d.v.Type)
	if err != nil {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Invalid value for variable %q", d.v.Name),
			Detail:   fmt.Sprintf("The value from %s does not fit the type %s: %s.", origin, typeexpr.TypeString(d.v.Type), err),
			Subject:  subject,
		}}
	}
	d.v.Value, d.v.Origin = conv, origin
	return nil
}

// setFromFile reads a var file: HCL attributes NAME = VALUE.
func (l *Loader) setFromFile(decls map[string]*variableDecl, path string) hcl.Diagnostics {
	f, diags := l.parser.ParseHCLFile(path)
	if diags.HasErrors() {
		return diags
	}
	attrs, aDiags := f.Body.JustAttributes()
	diags = append(diags, aDiags...)
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		attr := attrs[n]
		d, ok := decls[n]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  "Value for undeclared variable",
				Detail:   fmt.Sprintf("%s sets %q, but this configuration declares no such variable; the value is ignored.%s", filepath.Base(path), n, suggestName(n, declNames(decls))),
				Subject:  attr.NameRange.Ptr(),
			})
			continue
		}
		val, vDiags := attr.Expr.Value(nil)
		diags = append(diags, vDiags...)
		if vDiags.HasErrors() {
			continue
		}
		diags = append(diags, setValue(d, val, filepath.Base(path), attr.Expr.Range().Ptr())...)
	}
	return diags
}

// checkValidations runs each variable's validation rules with every variable in scope.
func checkValidations(decls map[string]*variableDecl, ctx *hcl.EvalContext) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, name := range sortedKeys(decls) {
		d := decls[name]
		if d.v.Value == cty.NilVal {
			continue
		}
		for _, rule := range d.validation {
			cond, cDiags := rule.condition.Value(ctx)
			if cDiags.HasErrors() {
				diags = append(diags, cDiags...)
				continue
			}
			cond, _ = cond.Unmark()
			if cond.IsNull() || cond.Type() != cty.Bool {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid validation condition",
					Detail:   "The condition must be true or false.",
					Subject:  rule.condition.Range().Ptr(),
				})
				continue
			}
			if cond.True() {
				continue
			}
			msg := "The value does not pass this validation rule."
			if m, mDiags := rule.errorMessage.Value(ctx); !mDiags.HasErrors() {
				if m.IsMarked() {
					msg = "(The error message is hidden because it includes a sensitive value.)"
				} else if s, err := convert.Convert(m, cty.String); err == nil && !s.IsNull() {
					msg = s.AsString()
				}
			}
			diags = append(diags, &hcl.Diagnostic{
				Severity:    hcl.DiagError,
				Summary:     fmt.Sprintf("Invalid value for variable %q", d.v.Name),
				Detail:      fmt.Sprintf("%s\n\nThe value came from %s.", msg, d.v.Origin),
				Subject:     rule.condition.Range().Ptr(),
				Expression:  rule.condition,
				EvalContext: ctx,
			})
		}
	}
	return diags
}

func declNames(decls map[string]*variableDecl) []string { return sortedKeys(decls) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

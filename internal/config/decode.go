package config

import (
	"fmt"
	"math/big"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// decoder evaluates the attributes of one block and collects the diagnostics, so that a block with several
// mistakes reports all of them.
type decoder struct {
	ctx       *hcl.EvalContext
	dir       string
	localVars map[string][]string
	diags     hcl.Diagnostics
}

func (d *decoder) refs(b *hcl.Block) []string {
	if b == nil {
		return nil
	}
	return varRefs(b.Body, d.localVars)
}

func (d *decoder) content(body hcl.Body, schema *hcl.BodySchema) *hcl.BodyContent {
	c, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	return c
}

// value evaluates an attribute and converts it to ty. Marks (sensitivity) are dropped here: the config's
// Secrets list is what keeps those values out of logs.
func (d *decoder) value(attr *hcl.Attribute, ty cty.Type) (cty.Value, bool) {
	val, diags := attr.Expr.Value(d.ctx)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	val, _ = val.UnmarkDeep()
	if !val.IsWhollyKnown() {
		// Only a variable that has no value yet produces unknowns; that error is already reported.
		return cty.NilVal, false
	}
	if val.IsNull() {
		return cty.NilVal, false
	}
	conv, err := convertValue(val, ty)
	if err != nil {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity:    hcl.DiagError,
			Summary:     fmt.Sprintf("Incorrect type for %q", attr.Name),
			Detail:      fmt.Sprintf("%q must be %s: %s.", attr.Name, friendlyType(ty), err),
			Subject:     attr.Expr.Range().Ptr(),
			Expression:  attr.Expr,
			EvalContext: d.ctx,
		})
		return cty.NilVal, false
	}
	return conv, true
}

func convertValue(v cty.Value, ty cty.Type) (cty.Value, error) {
	return convert.Convert(v, ty)
}

func friendlyType(ty cty.Type) string {
	switch {
	case ty == cty.String:
		return "a string"
	case ty == cty.Number:
		return "a number"
	case ty == cty.Bool:
		return "true or false"
	case ty.IsListType() && ty.ElementType() == cty.String:
		return "a list of strings"
	case ty.IsMapType() && ty.ElementType() == cty.String:
		return "a map of strings"
	}
	return ty.FriendlyName()
}

func (d *decoder) str(attrs hcl.Attributes, name string, dst *string) bool {
	attr, ok := attrs[name]
	if !ok {
		return false
	}
	v, ok := d.value(attr, cty.String)
	if ok {
		*dst = v.AsString()
	}
	return ok
}

func (d *decoder) boolean(attrs hcl.Attributes, name string, dst *bool) {
	if attr, ok := attrs[name]; ok {
		if v, ok := d.value(attr, cty.Bool); ok {
			*dst = v.True()
		}
	}
}

func (d *decoder) integer(attrs hcl.Attributes, name string, min, max int, dst *int) {
	attr, ok := attrs[name]
	if !ok {
		return
	}
	v, ok := d.value(attr, cty.Number)
	if !ok {
		return
	}
	bf := v.AsBigFloat()
	i, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact || i < int64(min) || i > int64(max) {
		d.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name),
			"%q must be a whole number from %d to %d, not %s.", name, min, max, bf.Text('f', -1))
		return
	}
	*dst = int(i)
}

func (d *decoder) strings(attrs hcl.Attributes, name string, dst *[]string) {
	attr, ok := attrs[name]
	if !ok {
		return
	}
	v, ok := d.value(attr, cty.List(cty.String))
	if !ok {
		return
	}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			d.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid value for %q", name), "%q must not hold null elements.", name)
			return
		}
		*dst = append(*dst, e.AsString())
	}
}

func (d *decoder) stringMap(attrs hcl.Attributes, name string) map[string]string {
	attr, ok := attrs[name]
	if !ok {
		return nil
	}
	v, ok := d.value(attr, cty.Map(cty.String))
	if !ok {
		return nil
	}
	out := map[string]string{}
	for k, e := range v.AsValueMap() {
		if !e.IsNull() {
			out[k] = e.AsString()
		}
	}
	return out
}

func (d *decoder) size(attrs hcl.Attributes, name string, min Size, dst *Size) {
	attr, ok := attrs[name]
	if !ok {
		return
	}
	v, ok := d.value(attr, cty.DynamicPseudoType)
	if !ok {
		return
	}
	s, err := sizeFromValue(v, MiB)
	if err == nil && s < min {
		err = fmt.Errorf("it is %s, less than the minimum of %s", s, min)
	}
	if err != nil {
		d.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid size for %q", name),
			"%s. A plain number counts MiB, as in Packer.", capitalize(err.Error()))
		return
	}
	*dst = s
}

func (d *decoder) duration(attrs hcl.Attributes, name string, dst *time.Duration) {
	d.timeSpan(attrs, name, "duration", ParseDuration, dst)
}

// age reads a freshness age such as "7d" (ParseAge).
func (d *decoder) age(attrs hcl.Attributes, name string, dst *time.Duration) {
	d.timeSpan(attrs, name, "age", ParseAge, dst)
}

// timeSpan reads a string attribute with parse; what names the kind of value in the error's summary.
func (d *decoder) timeSpan(attrs hcl.Attributes, name, what string, parse func(string) (time.Duration, error), dst *time.Duration) {
	attr, ok := attrs[name]
	if !ok {
		return
	}
	v, ok := d.value(attr, cty.String)
	if !ok {
		return
	}
	span, err := parse(v.AsString())
	if err != nil {
		d.errorf(attr.Expr.Range(), fmt.Sprintf("Invalid %s for %q", what, name), "%s.", capitalize(err.Error()))
		return
	}
	*dst = span
}

// oneOf reads a string that must be one of allowed and suggests the closest one when it is not.
func (d *decoder) oneOf(attrs hcl.Attributes, name string, allowed []string, dst *string) {
	attr, ok := attrs[name]
	if !ok {
		return
	}
	var s string
	if !d.str(attrs, name, &s) {
		return
	}
	for _, a := range allowed {
		if s == a {
			*dst = s
			return
		}
	}
	d.errorf(attr.Expr.Range(), fmt.Sprintf("Unknown %s %q", humanName(name), s),
		"%q must be one of %s.%s", name, quoteList(allowed), suggestName(s, allowed))
}

func (d *decoder) errorf(rng hcl.Range, summary, detail string, args ...any) {
	d.diags = append(d.diags, errorAt(rng, summary, detail, args...))
}

// single returns the only block of a type, reporting a duplicate; nil when there is none.
func (d *decoder) single(blocks hcl.Blocks, typ string) *hcl.Block {
	var found *hcl.Block
	for _, b := range blocks {
		if b.Type != typ {
			continue
		}
		if found != nil {
			d.errorf(b.DefRange, fmt.Sprintf("Duplicate %s block", typ),
				"Only one %s block is allowed here; the first one is at %s. Merge them.", typ, Pos(found.DefRange))
			continue
		}
		found = b
	}
	return found
}

func humanName(attr string) string {
	switch attr {
	case "format":
		return "output format"
	case "compression":
		return "compression"
	}
	return attr
}

func quoteList(items []string) string {
	out := ""
	for i, s := range items {
		switch {
		case i == 0:
		case i == len(items)-1:
			out += " or "
		default:
			out += ", "
		}
		out += fmt.Sprintf("%q", s)
	}
	return out
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	if s[0] >= 'a' && s[0] <= 'z' {
		return string(s[0]-'a'+'A') + s[1:]
	}
	return s
}

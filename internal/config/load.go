package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
)

// FileSuffix names the files of a configuration folder.
const FileSuffix = ".imgform.hcl"

// LoadOptions are the inputs of a configuration that do not live in its folder.
type LoadOptions struct {
	// Vars are the -var and -var-file arguments in command-line order.
	Vars []VarArg
	// Env is the process environment as KEY=VALUE; nil means os.Environ().
	Env []string
}

// Loader parses and evaluates configurations and remembers the source files so that diagnostics can be
// printed with snippets.
type Loader struct {
	parser  *hclparse.Parser
	secrets []string
}

// NewLoader returns a Loader with an empty file cache.
func NewLoader() *Loader {
	return &Loader{parser: hclparse.NewParser()}
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "image", LabelNames: []string{"name"}},
	},
}

// Load reads every *.imgform.hcl file of dir, evaluates variables, locals and images, and checks everything
// it can without touching the network. It reports as many errors as it can find, not only the first.
func (l *Loader) Load(dir string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	files, err := filepath.Glob(filepath.Join(dir, "*"+FileSuffix))
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot list configuration files", Detail: err.Error()}}
	}
	sort.Strings(files)
	if len(files) == 0 {
		detail := fmt.Sprintf("The folder %s holds no *%s files. Run imgform in a configuration folder or name one, e.g. imgform validate examples/debian-12-base.", dir, FileSuffix)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			detail = fmt.Sprintf("%s is not a folder. Name a folder holding *%s files.", dir, FileSuffix)
		}
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "No configuration files", Detail: detail}}
	}

	var diags hcl.Diagnostics
	var variableBlocks, localsBlocks, imageBlocks []*hcl.Block
	for _, name := range files {
		f, fDiags := l.parser.ParseHCLFile(name)
		diags = append(diags, fDiags...)
		if f == nil || fDiags.HasErrors() {
			// A file with syntax errors yields a partial body; checking it would only add follow-up errors.
			continue
		}
		content, cDiags := f.Body.Content(rootSchema)
		diags = append(diags, cDiags...)
		for _, b := range content.Blocks {
			switch b.Type {
			case "variable":
				variableBlocks = append(variableBlocks, b)
			case "locals":
				localsBlocks = append(localsBlocks, b)
			case "image":
				imageBlocks = append(imageBlocks, b)
			}
		}
	}

	if diags.HasErrors() {
		return nil, diags
	}
	cfg := &Config{Dir: dir, Variables: map[string]*Variable{}}
	for _, f := range files {
		cfg.Files = append(cfg.Files, filepath.Base(f))
	}

	decls := map[string]*variableDecl{}
	for _, b := range variableBlocks {
		d, dDiags := decodeVariable(b)
		diags = append(diags, dDiags...)
		if prev, ok := decls[d.v.Name]; ok {
			diags = append(diags, errorAt(b.LabelRanges[0], "Duplicate variable",
				"Variable %q is already declared at %s. Remove or rename one of them.", d.v.Name, Pos(prev.v.DeclRange)))
			continue
		}
		decls[d.v.Name] = d
	}
	diags = append(diags, l.assignVariables(decls, dir, opts)...)

	vars := map[string]cty.Value{}
	for name, d := range decls {
		cfg.Variables[name] = d.v
		val := d.v.Value
		if val == cty.NilVal {
			// Already reported; an unknown value lets the rest of the config be checked without follow-up errors.
			val = cty.UnknownVal(d.v.Type)
		}
		if d.v.Sensitive {
			cfg.Secrets = append(cfg.Secrets, secretStrings(val)...)
			val = val.Mark(sensitiveMark)
		}
		vars[name] = val
	}
	l.secrets = append(l.secrets, cfg.Secrets...)

	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)},
		Functions: Functions(dir),
	}
	diags = append(diags, checkValidations(decls, ctx)...)

	locals, localVars, lDiags := evalLocals(localsBlocks, ctx)
	diags = append(diags, lDiags...)
	ctx.Variables["local"] = cty.ObjectVal(locals)

	imgRefs := map[string]cty.Value{}
	for _, b := range imageBlocks {
		imgRefs[b.Labels[0]] = cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(b.Labels[0])})
	}
	ctx.Variables["image"] = cty.ObjectVal(imgRefs)

	seen := map[string]*Image{}
	for _, b := range imageBlocks {
		img, iDiags := decodeImage(b, ctx, dir, localVars)
		diags = append(diags, iDiags...)
		if prev, ok := seen[img.Name]; ok {
			diags = append(diags, errorAt(b.LabelRanges[0], "Duplicate image",
				"Image %q is already declared at %s. Image names must be unique in a configuration folder.", img.Name, Pos(prev.DeclRange)))
			continue
		}
		seen[img.Name] = img
		cfg.Images = append(cfg.Images, img)
	}
	if len(imageBlocks) == 0 && !diags.HasErrors() {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "No image block",
			Detail:   fmt.Sprintf("The configuration in %s declares no image. Add an image \"NAME\" { ... } block.", dir),
		})
	}
	diags = append(diags, checkImageGraph(cfg)...)
	diags = append(diags, checkOutputPaths(cfg)...)
	if !diags.HasErrors() {
		inheritNetworks(cfg)
	}
	refineReferenceErrors(diags, ctx)
	return cfg, diags
}

// inheritNetworks sets InheritedNetworks of every derived image: the network blocks of the images it derives
// from, whose handoff to systemd-networkd its disk already carries. The graph has no cycles by now.
func inheritNetworks(cfg *Config) {
	var networks func(img *Image, depth int) []*NetworkUnit
	networks = func(img *Image, depth int) []*NetworkUnit {
		parent := cfg.Image(img.Source.Image)
		if parent == nil || depth > len(cfg.Images) {
			return nil
		}
		return append(networks(parent, depth+1), parent.Networks...)
	}
	for _, img := range cfg.Images {
		img.InheritedNetworks = networks(img, 0)
	}
}

// Load is a shortcut for NewLoader().Load when diagnostics need no snippets.
func Load(dir string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	return NewLoader().Load(dir, opts)
}

// secretStrings collects the strings inside a value so they can be redacted from any text.
func secretStrings(v cty.Value) []string {
	var out []string
	_ = cty.Walk(v, func(_ cty.Path, v cty.Value) (bool, error) {
		v, _ = v.Unmark()
		if v.IsKnown() && !v.IsNull() && v.Type() == cty.String && v.AsString() != "" {
			out = append(out, v.AsString())
		}
		return true, nil
	})
	return out
}

package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

var provisionSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "inline"}, {Name: "script"}, {Name: "environment"}, {Name: "sudo"}, {Name: "timeout"},
		{Name: "refresh_every"},
	},
	Blocks: []hcl.BlockHeaderSchema{{Type: "file"}},
}

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (d *decoder) provision(b *hcl.Block) *Provisioner {
	p := &Provisioner{Name: b.Labels[0], Timeout: DefaultProvisionTimout, DeclRange: b.DefRange, VarRefs: d.refs(b)}
	c := d.content(b.Body, provisionSchema)
	a := c.Attributes
	d.strings(a, "inline", &p.Inline)
	if d.str(a, "script", &p.Script) {
		d.checkFile(a["script"], p.Script, "Script")
	}
	p.Environment = d.stringMap(a, "environment")
	for k := range p.Environment {
		if !envNamePattern.MatchString(k) {
			d.errorf(a["environment"].Expr.Range(), "Invalid environment variable name",
				"%q is not a valid environment variable name: use letters, digits and underscores, not starting with a digit.", k)
		}
	}
	d.boolean(a, "sudo", &p.Sudo)
	d.duration(a, "timeout", &p.Timeout)
	d.age(a, "refresh_every", &p.RefreshEvery)
	for _, fb := range c.Blocks {
		p.Uploads = append(p.Uploads, d.upload(fb))
	}
	d.inlineOrScript(b, a, "Provisioner", p.Name, len(c.Blocks) > 0,
		"does nothing: give inline = [\"command\", ...], script = \"path\" or a file { source, destination } block")
	return p
}

// inlineOrScript reports a provisioner or test block (what, named name) that has both inline and script, or
// neither when it has nothing else to do (other); empty says what to give then.
func (d *decoder) inlineOrScript(b *hcl.Block, a hcl.Attributes, what, name string, other bool, empty string) {
	_, hasInline := a["inline"]
	_, hasScript := a["script"]
	switch {
	case hasInline && hasScript:
		d.errorf(a["script"].NameRange, "Both inline and script",
			"%s %q has both inline and script. Use two %s blocks, or put the commands into the script.", what, name, b.Type)
	case !hasInline && !hasScript && !other:
		d.errorf(b.DefRange, "Empty "+strings.ToLower(what), "%s %q %s.", what, name, empty)
	}
}

var uploadSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "source"}, {Name: "content"}, {Name: "destination", Required: true}, {Name: "mode"}, {Name: "owner"},
	},
}

var modePattern = regexp.MustCompile(`^0?[0-7]{3,4}$`)

func (d *decoder) upload(b *hcl.Block) *Upload {
	u := &Upload{DeclRange: b.DefRange}
	c := d.content(b.Body, uploadSchema)
	a := c.Attributes
	hasSource := d.str(a, "source", &u.Source)
	u.HasContent = d.str(a, "content", &u.Content)
	d.str(a, "destination", &u.Destination)
	d.str(a, "owner", &u.Owner)
	if d.str(a, "mode", &u.Mode) && !modePattern.MatchString(u.Mode) {
		d.errorf(a["mode"].Expr.Range(), "Invalid file mode", "%q is not an octal file mode; write it like \"0644\" or \"0440\".", u.Mode)
	}
	if u.Destination != "" && !strings.HasPrefix(u.Destination, "/") {
		d.errorf(a["destination"].Expr.Range(), "Relative destination",
			"The destination %q must be an absolute path in the guest, e.g. \"/etc/motd\".", u.Destination)
	}
	_, sourceGiven := a["source"]
	_, contentGiven := a["content"]
	switch {
	case sourceGiven && contentGiven:
		d.errorf(a["content"].NameRange, "Both source and content", "A file block takes either source (a local file) or content (literal text), not both.")
	case !sourceGiven && !contentGiven:
		d.errorf(b.DefRange, "Missing file source", "A file block needs source = \"local/path\" or content = \"text\".")
	case hasSource:
		d.checkFile(a["source"], u.Source, "File")
	}
	return u
}

// checkFile reports a local file that a step will read but that is not there.
func (d *decoder) checkFile(attr *hcl.Attribute, path, what string) {
	full := path
	if !filepath.IsAbs(full) {
		full = filepath.Join(d.dir, path)
	}
	st, err := os.Stat(full)
	switch {
	case err != nil:
		d.errorf(attr.Expr.Range(), what+" not found",
			"No file at %s (paths are relative to the configuration folder %s).", path, d.dir)
	case st.IsDir():
		d.errorf(attr.Expr.Range(), what+" is a folder", "%s is a folder; name a file.", path)
	}
}

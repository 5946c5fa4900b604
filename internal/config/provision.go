package config

import (
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

var provisionSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "inline"}, {Name: "script"}, {Name: "environment"}, {Name: "sudo"}, {Name: "timeout"},
		{Name: "refresh_every"}, {Name: "scripts"}, {Name: "valid_exit_codes"}, {Name: "max_retries"},
		{Name: "pause_before"}, {Name: "expect_disconnect"}, {Name: "reboot"},
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
	d.strings(a, "scripts", &p.Scripts)
	for _, sc := range p.Scripts {
		d.checkFile(a["scripts"], sc, "Script")
	}
	p.ValidExitCodes = []int{0}
	if attr, ok := a["valid_exit_codes"]; ok {
		if v, ok := d.value(attr, cty.List(cty.Number)); ok {
			p.ValidExitCodes = nil
			for _, n := range v.AsValueSlice() {
				bf := n.AsBigFloat()
				code, acc := bf.Int64()
				if !bf.IsInt() || acc != big.Exact || code < 0 || code > 255 {
					d.errorf(attr.Expr.Range(), "Invalid exit code", "%s is not an exit status: use whole numbers from 0 to 255.", bf.String())
					continue
				}
				p.ValidExitCodes = append(p.ValidExitCodes, int(code))
			}
			if len(p.ValidExitCodes) == 0 {
				d.errorf(attr.Expr.Range(), "No valid exit code", "valid_exit_codes lists no exit status, so the provisioner could never succeed; the default is [0].")
			}
		}
	}
	d.integer(a, "max_retries", 0, 100, &p.MaxRetries)
	d.duration(a, "pause_before", &p.PauseBefore)
	d.boolean(a, "expect_disconnect", &p.ExpectDisconnect)
	d.boolean(a, "reboot", &p.Reboot)
	for _, fb := range c.Blocks {
		if dl := d.download(fb); dl != nil {
			p.Downloads = append(p.Downloads, dl)
		} else {
			p.Uploads = append(p.Uploads, d.upload(fb))
		}
	}
	d.inlineOrScript(b, a, "Provisioner", p.Name, len(c.Blocks) > 0 || len(p.Scripts) > 0 || p.Reboot,
		"does nothing: give inline = [\"command\", ...], script = \"path\", scripts = [...] or a file { source, destination } block")
	if attr, ok := a["scripts"]; ok && (a["inline"] != nil || a["script"] != nil) {
		d.errorf(attr.NameRange, "Both scripts and inline or script",
			"Provisioner %q has scripts and also inline or script: give the commands one way, or use two provision blocks.", p.Name)
	}
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
		{Name: "direction"},
	},
}

// download decodes a file block with direction = "download" (Packer's word), or returns nil for an upload
// (direction left out or "upload"), which upload decodes. A download copies source, a file in the guest,
// to destination, a local path, after the provisioner's commands.
func (d *decoder) download(b *hcl.Block) *Download {
	attrs, _ := b.Body.JustAttributes()
	attr, ok := attrs["direction"]
	if !ok {
		return nil
	}
	var dir string
	if !d.str(hcl.Attributes{"direction": attr}, "direction", &dir) {
		// Reported; decoding it as an upload would add errors about a guest path not found here.
		return &Download{DeclRange: b.DefRange}
	}
	switch dir {
	case "upload":
		return nil
	case "download":
	default:
		d.errorf(attr.Expr.Range(), "Invalid file direction",
			"direction is %q; use \"upload\" (the default: a local file into the guest) or \"download\" (a guest file out to a local path).", dir)
		return &Download{DeclRange: b.DefRange}
	}
	dl := &Download{DeclRange: b.DefRange}
	c := d.content(b.Body, uploadSchema)
	a := c.Attributes
	for _, name := range []string{"content", "mode", "owner"} {
		if at, ok := a[name]; ok {
			d.errorf(at.NameRange, "Not for a download",
				"%s is for uploads; a download copies the guest file named by source to the local path named by destination, readable by you.", name)
		}
	}
	if !d.str(a, "source", &dl.Source) {
		if _, ok := a["source"]; !ok {
			d.errorf(b.DefRange, "Missing file source", "A download needs source = \"/path/in/the/guest\", the file to copy out.")
		}
	} else if !strings.HasPrefix(dl.Source, "/") || strings.HasSuffix(dl.Source, "/") {
		d.errorf(a["source"].Expr.Range(), "Invalid download source",
			"The source %q of a download must be the absolute path of a file in the guest, e.g. \"/var/log/sbom.json\".", dl.Source)
	}
	if d.str(a, "destination", &dl.Destination) && strings.TrimSpace(dl.Destination) == "" {
		d.errorf(a["destination"].Expr.Range(), "Empty destination",
			"The destination of a download is a local path, relative to the configuration folder (\"dist/sbom.json\", or \"dist/\" to keep the guest file's name).")
	}
	return dl
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

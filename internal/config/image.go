package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

var imageSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "refresh_every"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "source"},
		{Type: "machine"},
		{Type: "userdata"},
		{Type: "network", LabelNames: []string{"name"}},
		{Type: "provision", LabelNames: []string{"name"}},
		{Type: "cleanup"},
		{Type: "output", LabelNames: []string{"name"}},
		{Type: "smoke_test"},
		{Type: "test", LabelNames: []string{"name"}},
	},
}

// Defaults for what an image block leaves out. The timeouts are sized for software emulation, where a first
// boot with a package upgrade takes minutes (see the field notes).
const (
	DefaultMachineType     = "q35"
	DefaultMemory          = 1 * GiB
	DefaultCPUs            = 2
	DefaultBootTimeout     = 30 * time.Minute
	DefaultShutdownTimeout = 5 * time.Minute
	DefaultProvisionTimout = 30 * time.Minute
	DefaultZstdLevel       = 3
)

func decodeImage(block *hcl.Block, ctx *hcl.EvalContext, dir string, localVars map[string][]string) (*Image, hcl.Diagnostics) {
	img := &Image{Name: block.Labels[0], DeclRange: block.DefRange}
	d := &decoder{ctx: ctx, dir: dir, localVars: localVars}
	d.diags = append(d.diags, checkName("image", img.Name, block.LabelRanges[0])...)
	c := d.content(block.Body, imageSchema)
	d.age(c.Attributes, "refresh_every", &img.RefreshEvery)

	if b := d.single(c.Blocks, "source"); b != nil {
		img.Source = d.source(b)
	} else {
		d.errorf(block.DefRange, "Missing source block",
			"Image %q needs a source block: a url with a checksum, a local path, or image = image.OTHER.", img.Name)
	}
	img.Machine = d.machine(d.single(c.Blocks, "machine"), block.DefRange)
	if b := d.single(c.Blocks, "userdata"); b != nil {
		img.Userdata = d.userdata(b)
	}
	img.Cleanup = d.cleanup(d.single(c.Blocks, "cleanup"), block.DefRange)
	img.SmokeTest = d.smokeTest(d.single(c.Blocks, "smoke_test"), block.DefRange)

	names := map[string]map[string]hcl.Range{"network": {}, "provision": {}, "output": {}, "test": {}}
	for _, b := range c.Blocks {
		switch b.Type {
		case "network", "provision", "output", "test":
		default:
			continue
		}
		name := b.Labels[0]
		d.diags = append(d.diags, checkName(b.Type, name, b.LabelRanges[0])...)
		if prev, ok := names[b.Type][name]; ok {
			d.errorf(b.LabelRanges[0], fmt.Sprintf("Duplicate %s %q", b.Type, name),
				"Image %q already has a %s named %q at %s. Names must be unique within an image.", img.Name, b.Type, name, Pos(prev))
			continue
		}
		names[b.Type][name] = b.LabelRanges[0]
		switch b.Type {
		case "network":
			if u := d.network(b); u != nil {
				img.Networks = append(img.Networks, u)
			}
		case "provision":
			img.Provisioners = append(img.Provisioners, d.provision(b))
		case "output":
			img.Outputs = append(img.Outputs, d.output(b))
		case "test":
			img.Tests = append(img.Tests, d.test(b))
		}
	}
	return img, d.diags
}

var sourceSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "url"}, {Name: "path"}, {Name: "checksum"}, {Name: "image"}},
}

func (d *decoder) source(b *hcl.Block) Source {
	s := Source{DeclRange: b.DefRange, VarRefs: d.refs(b)}
	c := d.content(b.Body, sourceSchema)
	set := []string{}
	for _, n := range []string{"url", "path", "image"} {
		if _, ok := c.Attributes[n]; ok {
			set = append(set, n)
		}
	}
	if len(set) != 1 {
		rng := b.DefRange
		if len(set) > 1 {
			rng = c.Attributes[set[1]].NameRange
		}
		d.errorf(rng, "Invalid source", "A source needs exactly one of url, path or image; this one has %s.", describeSet(set))
		return s
	}
	d.str(c.Attributes, "url", &s.URL)
	d.str(c.Attributes, "path", &s.Path)
	if attr, ok := c.Attributes["image"]; ok {
		s.Image = d.imageRef(attr)
		s.ImageRange = attr.Expr.Range()
		if _, ok := c.Attributes["checksum"]; ok {
			d.errorf(c.Attributes["checksum"].NameRange, "Checksum on a derived image",
				"A source with image = ... starts from that image's result, which imgform checks itself. Remove the checksum.")
		}
		return s
	}
	if attr, ok := c.Attributes["checksum"]; ok {
		if d.str(c.Attributes, "checksum", &s.Checksum) {
			if err := CheckChecksum(s.Checksum); err != nil {
				d.errorf(attr.Expr.Range(), "Invalid checksum", "%s", err)
			}
		}
	} else if s.URL != "" {
		d.errorf(b.DefRange, "Missing checksum",
			"A downloaded source needs a checksum, like checksum = \"sha256:<hex>\" or \"file:<url of a SHA256SUMS or SHA512SUMS file>\". "+
				"Write checksum = \"none\" to download without one (the content is then hashed after each download).")
	}
	if s.Path != "" {
		full := s.Path
		if !filepath.IsAbs(full) {
			full = filepath.Join(d.dir, full)
		}
		if st, err := os.Stat(full); err != nil || st.IsDir() {
			d.errorf(c.Attributes["path"].Expr.Range(), "Source image not found",
				"No file at %s (paths are relative to the configuration folder %s).", s.Path, d.dir)
		}
	}
	return s
}

func describeSet(set []string) string {
	if len(set) == 0 {
		return "none"
	}
	return strings.Join(set, " and ")
}

// imageRef reads image = image.NAME. It is a reference, not a string, so that the graph edge is explicit and
// a misspelled name is caught like any unknown reference.
func (d *decoder) imageRef(attr *hcl.Attribute) string {
	tr, diags := hcl.AbsTraversalForExpr(attr.Expr)
	if diags.HasErrors() || tr.RootName() != "image" || len(tr) != 2 {
		d.errorf(attr.Expr.Range(), "Invalid image reference", "Write the parent image as a reference: image = image.NAME.")
		return ""
	}
	step, ok := tr[1].(hcl.TraverseAttr)
	if !ok {
		d.errorf(attr.Expr.Range(), "Invalid image reference", "Write the parent image as a reference: image = image.NAME.")
		return ""
	}
	return step.Name
}

var machineSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "type"}, {Name: "memory"}, {Name: "cpus"}, {Name: "cpu"}, {Name: "disk_size"},
		{Name: "accelerator"}, {Name: "firmware"}, {Name: "boot_timeout"}, {Name: "shutdown_timeout"},
		{Name: "host_loopback"},
	},
}

func (d *decoder) machine(b *hcl.Block, imgRange hcl.Range) Machine {
	m := Machine{
		Type: DefaultMachineType, Memory: DefaultMemory, CPUs: DefaultCPUs, Accelerator: "auto", Firmware: "bios",
		BootTimeout: DefaultBootTimeout, ShutdownTimeout: DefaultShutdownTimeout, DeclRange: imgRange,
	}
	if b == nil {
		return m
	}
	m.DeclRange, m.VarRefs = b.DefRange, d.refs(b)
	c := d.content(b.Body, machineSchema)
	a := c.Attributes
	d.str(a, "type", &m.Type)
	d.size(a, "memory", 128*MiB, &m.Memory)
	d.integer(a, "cpus", 1, 256, &m.CPUs)
	d.str(a, "cpu", &m.CPU)
	d.size(a, "disk_size", 64*MiB, &m.DiskSize)
	if attr, ok := a["disk_size"]; ok {
		m.DiskSizeRange = attr.Expr.Range()
	}
	d.oneOf(a, "accelerator", Accelerators, &m.Accelerator)
	d.oneOf(a, "firmware", Firmwares, &m.Firmware)
	d.duration(a, "boot_timeout", &m.BootTimeout)
	d.duration(a, "shutdown_timeout", &m.ShutdownTimeout)
	if _, ok := a["host_loopback"]; ok {
		m.HostLoopback = new(bool)
		d.boolean(a, "host_loopback", m.HostLoopback)
	}
	return m
}

var userdataSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "cloud_config"}, {Name: "content"}},
}

func (d *decoder) userdata(b *hcl.Block) Userdata {
	u := Userdata{VarRefs: d.refs(b)}
	c := d.content(b.Body, userdataSchema)
	if attr, ok := c.Attributes["cloud_config"]; ok {
		u.CloudConfig = d.cloudConfig(attr)
	}
	d.str(c.Attributes, "content", &u.Raw)
	if len(c.Attributes) == 0 {
		d.errorf(b.DefRange, "Empty userdata block", "Give cloud_config = { ... } (or a YAML string from file()) or content = file(\"user-data\").")
	}
	return u
}

var cleanupSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "cloud_init"}, {Name: "machine_id"}, {Name: "ssh_host_keys"}, {Name: "resolved"},
		{Name: "logs"}, {Name: "apt_lists"}, {Name: "trim"}, {Name: "zero_free_space"},
	},
}

// cleanup defaults to what a golden image needs (no instance identity, no host keys, no deleted data in
// free space, trimmed); only the optional extras (resolved, logs, apt lists) are off unless asked for.
func (d *decoder) cleanup(b *hcl.Block, imgRange hcl.Range) Cleanup {
	cl := Cleanup{CloudInit: true, MachineID: true, SSHHostKeys: true, Trim: true, ZeroFreeSpace: true, DeclRange: imgRange}
	if b == nil {
		return cl
	}
	cl.DeclRange, cl.VarRefs = b.DefRange, d.refs(b)
	c := d.content(b.Body, cleanupSchema)
	a := c.Attributes
	d.boolean(a, "cloud_init", &cl.CloudInit)
	d.boolean(a, "machine_id", &cl.MachineID)
	d.boolean(a, "ssh_host_keys", &cl.SSHHostKeys)
	d.boolean(a, "resolved", &cl.Resolved)
	d.boolean(a, "logs", &cl.Logs)
	d.boolean(a, "apt_lists", &cl.AptLists)
	d.boolean(a, "trim", &cl.Trim)
	d.boolean(a, "zero_free_space", &cl.ZeroFreeSpace)
	return cl
}

var outputSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "format"}, {Name: "compression"}, {Name: "level"}, {Name: "path", Required: true},
		{Name: "publish"}, {Name: "publish_container_disk"},
	},
}

func (d *decoder) output(b *hcl.Block) *Output {
	o := &Output{Name: b.Labels[0], Format: "qcow2", Compression: "none", DeclRange: b.DefRange, VarRefs: d.refs(b)}
	c := d.content(b.Body, outputSchema)
	a := c.Attributes
	d.oneOf(a, "format", OutputFormats, &o.Format)
	d.oneOf(a, "compression", OutputCompressions, &o.Compression)
	d.str(a, "path", &o.Path)
	if o.Compression == "zstd" {
		o.Level = DefaultZstdLevel
	}
	if attr, ok := a["level"]; ok {
		switch o.Compression {
		case "zstd":
			d.integer(a, "level", 1, 22, &o.Level)
		default:
			d.errorf(attr.NameRange, "Compression level without zstd",
				"level applies to compression = \"zstd\" only (qemu-img has no level for qcow2-zstd). Remove it or set compression = \"zstd\".")
		}
	}
	for _, p := range []struct {
		name  string
		dst   *string
		where *hcl.Range
	}{{"publish", &o.Publish, &o.PublishRange}, {"publish_container_disk", &o.PublishContainerDisk, &o.PublishContainerDiskRange}} {
		if attr, ok := a[p.name]; ok {
			d.str(a, p.name, p.dst)
			*p.where = attr.Expr.Range()
			if *p.dst != "" && !validPublishRef(*p.dst) {
				d.errorf(attr.Expr.Range(), "Invalid "+p.name+" reference",
					"Write the image reference as oci://HOST[:PORT]/REPOSITORY:TAG, for example \"oci://registry.example.org/images/debian-12:2026.11\".")
			}
		}
	}
	// KubeVirt and CDI read a containerDisk's file as raw or qcow2, nothing else.
	if o.PublishContainerDisk != "" && o.Format != "qcow2" && o.Format != "raw" {
		d.errorf(o.PublishContainerDiskRange, "containerDisk needs format qcow2 or raw",
			"KubeVirt's containerDisk holds a qcow2 or raw image, not %s; set format = \"qcow2\" or remove publish_container_disk.", o.Format)
	}
	if o.Compression == "qcow2-zstd" && o.Format != "qcow2" {
		d.errorf(a["compression"].Expr.Range(), "qcow2-zstd needs format qcow2",
			"Internal zstd clusters exist only in qcow2 images; set format = \"qcow2\" or compression = \"zstd\".")
	}
	if o.Compression == "zstd" && o.Path != "" && !strings.HasSuffix(o.Path, ".zst") {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "Compressed output without .zst",
			Detail:   fmt.Sprintf("Output %q is zstd-compressed but its path %q does not end in .zst; tools that go by the name will not unpack it.", o.Name, o.Path),
			Subject:  a["path"].Expr.Range().Ptr(),
		})
	}
	return o
}

// validPublishRef is the shape of oci://HOST[:PORT]/REPOSITORY:TAG; the registry client checks the rest
// when it publishes.
func validPublishRef(s string) bool {
	rest, ok := strings.CutPrefix(s, "oci://")
	host, repoTag, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || host == "" || strings.Contains(repoTag, "@") {
		return false
	}
	i := strings.LastIndex(repoTag, ":")
	return i > 0 && i < len(repoTag)-1 && !strings.Contains(repoTag[i:], "/")
}

// cloudConfig accepts an object (rendered to YAML later) or a YAML string, e.g. file("cloud-config.yaml").
func (d *decoder) cloudConfig(attr *hcl.Attribute) cty.Value {
	v, ok := d.value(attr, cty.DynamicPseudoType)
	if !ok {
		return cty.NilVal
	}
	if v.Type() == cty.String {
		obj, err := parseCloudConfigYAML(v.AsString())
		if err != nil {
			d.errorf(attr.Expr.Range(), "Invalid cloud_config YAML", "%s.", err)
			return cty.NilVal
		}
		return obj
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		d.errorf(attr.Expr.Range(), "Invalid cloud_config",
			"cloud_config must be an object, like cloud_config = { packages = [\"curl\"] }, or a YAML string; it is %s.", v.Type().FriendlyName())
		return cty.NilVal
	}
	if err := checkCloudConfigValue(v); err != nil {
		d.errorf(attr.Expr.Range(), "Invalid cloud_config", "%s.", err)
		return cty.NilVal
	}
	return v
}

package config

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// SmokeTest switches the built-in checks of the test step, which boots an image's final disk as a brand-new
// instance after the export. Every check runs by default; a check whose promise the cleanup block does not
// make (machine_id = false, say) is skipped rather than failed.
type SmokeTest struct {
	// Enabled false turns every built-in check off; test blocks still run.
	Enabled     bool
	CloudInit   bool // cloud-init finished without errors and ran exactly one instance, the new one
	MachineID   bool // /etc/machine-id is set and is not the build's
	SSHHostKeys bool // the SSH host keys are not the build's
	BuildUser   bool // the build user and its key are gone; the build key is refused
	Network     bool // every interface a network block matches is configured, with the route metric it sets
	DNS         bool // systemd-resolved has a DNS server, and DNSQuery resolves through it when given
	BuildTraces bool // nothing the build leaves is left where cleanup promises to clean
	// DNSQuery is a name the dns check resolves through systemd-resolved; empty checks the servers only.
	DNSQuery  string
	DeclRange hcl.Range
	VarRefs   []string
}

// Test is a user check run in the booted test instance: a named pass/fail.
type Test struct {
	Name      string
	Inline    []string
	Script    string // path relative to the configuration folder
	Sudo      bool
	Timeout   time.Duration
	DeclRange hcl.Range
	VarRefs   []string
}

// DefaultTestTimeout bounds one test block.
const DefaultTestTimeout = 10 * time.Minute

// HasTestStep tells whether the image gets a test step: it has outputs to vouch for and something to check.
func (img *Image) HasTestStep() bool {
	return len(img.Outputs) > 0 && (img.SmokeTest.Enabled || len(img.Tests) > 0)
}

var smokeTestSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "enabled"}, {Name: "cloud_init"}, {Name: "machine_id"}, {Name: "ssh_host_keys"}, {Name: "build_user"},
		{Name: "network"}, {Name: "dns"}, {Name: "build_traces"}, {Name: "dns_query"},
	},
}

func (d *decoder) smokeTest(b *hcl.Block, imgRange hcl.Range) SmokeTest {
	st := SmokeTest{Enabled: true, CloudInit: true, MachineID: true, SSHHostKeys: true, BuildUser: true, Network: true,
		DNS: true, BuildTraces: true, DeclRange: imgRange}
	if b == nil {
		return st
	}
	st.DeclRange, st.VarRefs = b.DefRange, d.refs(b)
	a := d.content(b.Body, smokeTestSchema).Attributes
	d.boolean(a, "enabled", &st.Enabled)
	d.boolean(a, "cloud_init", &st.CloudInit)
	d.boolean(a, "machine_id", &st.MachineID)
	d.boolean(a, "ssh_host_keys", &st.SSHHostKeys)
	d.boolean(a, "build_user", &st.BuildUser)
	d.boolean(a, "network", &st.Network)
	d.boolean(a, "dns", &st.DNS)
	d.boolean(a, "build_traces", &st.BuildTraces)
	d.str(a, "dns_query", &st.DNSQuery)
	return st
}

var testSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "inline"}, {Name: "script"}, {Name: "sudo"}, {Name: "timeout"}},
}

func (d *decoder) test(b *hcl.Block) *Test {
	t := &Test{Name: b.Labels[0], Timeout: DefaultTestTimeout, DeclRange: b.DefRange, VarRefs: d.refs(b)}
	a := d.content(b.Body, testSchema).Attributes
	d.strings(a, "inline", &t.Inline)
	if d.str(a, "script", &t.Script) {
		d.checkFile(a["script"], t.Script, "Script")
	}
	d.boolean(a, "sudo", &t.Sudo)
	d.duration(a, "timeout", &t.Timeout)
	d.inlineOrScript(b, a, "Test", t.Name, false,
		"checks nothing: give inline = [\"command\", ...] or script = \"path\"; it passes when they exit 0")
	return t
}

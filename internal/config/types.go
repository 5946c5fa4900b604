package config

import (
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/unit"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Config is a fully evaluated and checked configuration: plain values that the engine consumes. Nothing in it
// needs an HCL evaluation context any more; the source ranges are kept so later errors can point at the file.
type Config struct {
	// Dir is the configuration folder as the user named it; file references are relative to it.
	Dir string
	// Files are the names of the loaded *.imgform.hcl files, sorted.
	Files []string
	// Variables holds every declared variable with its final value.
	Variables map[string]*Variable
	// Images in declaration order (files sorted by name, blocks in file order).
	Images []*Image
	// Secrets are the plain text forms of sensitive values; Redact replaces them in any text.
	Secrets []string
}

// Image returns the image with the given name, or nil.
func (c *Config) Image(name string) *Image {
	for _, img := range c.Images {
		if img.Name == name {
			return img
		}
	}
	return nil
}

// Variable is a declared input variable and the value it ended with.
type Variable struct {
	Name        string
	Description string
	Type        cty.Type
	Sensitive   bool
	// Value is the final value after defaults, environment, var files and -var flags; it is never marked.
	Value cty.Value
	// Origin says where the value came from ("default", "environment", a file name, "-var").
	Origin    string
	DeclRange hcl.Range
}

// Image is one image block: how to get a source disk, how to boot it, what to do in it, what to write out.
type Image struct {
	Name     string
	Source   Source
	Machine  Machine
	Userdata Userdata
	Networks []*NetworkUnit
	// InheritedNetworks are the network blocks of the images this one derives from (its disk carries their
	// handoff); the test step checks them too. Set by Load.
	InheritedNetworks []*NetworkUnit
	Provisioners      []*Provisioner
	Cleanup           Cleanup
	Outputs           []*Output
	// SmokeTest and Tests are what the test step checks in a new instance of the result (smoketest.go).
	SmokeTest SmokeTest
	Tests     []*Test
	// RefreshEvery is refresh_every: a result of the image's first guest step (its boot, with the package
	// upgrade) older than this is built again, and with it everything after it; 0 means never.
	RefreshEvery time.Duration
	DeclRange    hcl.Range
}

// Source says where the image's first disk comes from: exactly one of URL, Path and Image is set.
type Source struct {
	// URL is a go-getter address of a downloadable disk image.
	URL string
	// Path is a local disk image, relative to the configuration folder unless absolute.
	Path string
	// Checksum is "type:hex", "file:URL-of-a-sums-file" or empty (then the content is hashed).
	Checksum string
	// Image is the name of another image of this configuration whose result is the starting disk.
	Image      string
	ImageRange hcl.Range // where image = image.NAME is written
	DeclRange  hcl.Range
	// VarRefs names the variables the block uses, directly or through locals; plan explains changes with it.
	VarRefs []string
}

// Machine is the virtual hardware of the build VM.
type Machine struct {
	Type            string // QEMU machine type, e.g. "q35" or "pc-q35-7.2"
	Memory          Size
	CPUs            int
	CPU             string // QEMU -cpu model; empty means "host" under KVM and "max" under TCG
	DiskSize        Size   // 0 keeps the source's virtual size
	Accelerator     string // auto, kvm or tcg
	Firmware        string // bios or uefi
	BootTimeout     time.Duration
	ShutdownTimeout time.Duration
	// HostLoopback says whether the guest may reach services on the build host's loopback; nil (not set)
	// means no where passt is installed and yes, with a warning, where it is not (qemu.ResolveNetwork).
	HostLoopback  *bool
	DeclRange     hcl.Range
	DiskSizeRange hcl.Range // where disk_size's value is written, for later errors; zero when not given
	VarRefs       []string
}

// Userdata is what cloud-init receives: the user's cloud-config (as a cty object, rendered to YAML late so the
// engine can add its build user) and optionally raw user-data in any format cloud-init reads.
type Userdata struct {
	// CloudConfig is an object value (never marked), or cty.NilVal when not given.
	CloudConfig cty.Value
	// Raw is user-data given verbatim (a script, a #cloud-config document, a MIME archive); may be empty.
	Raw     string
	VarRefs []string
}

// NetworkUnit is a systemd-networkd .network file. Sections keep their order and may repeat ([Address],
// [Route]); a key may repeat inside a section (multi-valued keys such as DNS=).
type NetworkUnit struct {
	Name      string // file name without ".network"
	Sections  []*unit.UnitSection
	DeclRange hcl.Range
	VarRefs   []string
}

// Provisioner runs commands in the booted guest; its result is a cached disk layer.
type Provisioner struct {
	Name    string
	Inline  []string
	Script  string // path relative to the configuration folder
	Uploads []*Upload
	// Downloads are copied out of the guest after the commands (file blocks with direction = "download").
	Downloads   []*Download
	Environment map[string]string
	Sudo        bool
	Timeout     time.Duration
	// RefreshEvery: a result of this provisioner older than this is built again, and everything after it;
	// 0 means never.
	RefreshEvery time.Duration
	// Scripts run one after the other, each as Script would (scripts = [...], instead of script or inline).
	Scripts []string
	// ValidExitCodes are the exit statuses that count as success ([0] unless given).
	ValidExitCodes []int
	// MaxRetries runs the commands again up to this many times when they fail (a status not in
	// ValidExitCodes, or a lost connection); uploads are not repeated.
	MaxRetries int
	// PauseBefore waits this long before the provisioner starts (after the step before it).
	PauseBefore time.Duration
	// ExpectDisconnect makes a lost SSH connection during the commands a success (a script that reboots
	// the guest or restarts its network); the next command waits until the guest answers again.
	ExpectDisconnect bool
	// Reboot reboots the guest after the commands and waits until it has booted again (a new boot ID, SSH
	// with the same host key, systemd done starting).
	Reboot    bool
	DeclRange hcl.Range
	VarRefs   []string
}

// Upload copies a file or literal content into the guest before the provisioner's commands run.
type Upload struct {
	Source      string // path relative to the configuration folder, or empty when Content is set
	Content     string
	HasContent  bool
	Destination string
	Mode        string // octal, e.g. "0644"
	Owner       string // "user:group", empty for the login user
	DeclRange   hcl.Range
}

// Download copies a file out of the guest after the provisioner's commands ran: it is kept with the step's
// result in the cache and written to Destination on every apply that finds it missing or changed.
type Download struct {
	Source string // absolute path in the guest
	// Destination is a local path relative to the configuration folder, as written; one ending in "/" is a
	// folder that receives the file under its guest name (Path).
	Destination string
	DeclRange   hcl.Range
}

// Path is the local file the download writes, relative to the configuration folder unless absolute.
func (d *Download) Path() string {
	if strings.HasSuffix(d.Destination, "/") {
		return filepath.Join(d.Destination, path.Base(d.Source))
	}
	return filepath.Clean(d.Destination)
}

// Cleanup is the declarative last stage that makes the image generic. The build user's key is always removed
// and the file systems are always synced; the rest can be switched off.
type Cleanup struct {
	CloudInit   bool // cloud-init clean --logs --seed
	MachineID   bool // empty /etc/machine-id and the dbus one
	SSHHostKeys bool // remove /etc/ssh/ssh_host_*
	Resolved    bool // /etc/resolv.conf -> systemd-resolved's stub
	Logs        bool // truncate logs and the journal
	AptLists    bool // remove /var/lib/apt/lists/*
	Trim        bool // fstrim free space so the export stays small
	// ZeroFreeSpace overwrites the free space of the guest's file systems with zeros before the trim: a
	// deleted file's blocks (cloud-init's copies of the user-data, the build user's key) ship in the
	// image otherwise, since the trim frees only whole clusters of the disk layer.
	ZeroFreeSpace bool
	DeclRange     hcl.Range
	VarRefs       []string
}

// Output is one exported file of an image.
type Output struct {
	Name        string
	Format      string // qcow2 or raw
	Compression string // none, zstd or qcow2-zstd
	Level       int
	Path        string // relative to the configuration folder unless absolute
	// Publish and PublishContainerDisk are oci://HOST[:PORT]/REPOSITORY:TAG references the output is pushed
	// to once its image passed its test: as an OCI artifact with its manifest and checksum, and as a KubeVirt
	// containerDisk. Empty: not published.
	Publish, PublishContainerDisk           string
	PublishRange, PublishContainerDiskRange hcl.Range
	DeclRange                               hcl.Range
	VarRefs                                 []string
}

// Output formats and compressions the export step knows.
var (
	OutputFormats      = []string{"qcow2", "raw", "vmdk", "vhdx"}
	OutputCompressions = []string{"none", "zstd", "qcow2-zstd"}
	Accelerators       = []string{"auto", "kvm", "tcg"}
	Firmwares          = []string{"bios", "uefi"}
)

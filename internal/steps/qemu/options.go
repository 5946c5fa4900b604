package qemu

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"gitlab.com/imgform/imgform/internal/config"
)

// Accelerators and firmware kinds Options understands.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"

	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// Debian's OVMF build (package ovmf): the 4 MiB flash layout, code and variable store as separate files.
const (
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Options describe one build VM. The zero value of each field means its documented default.
type Options struct {
	// Binary is the QEMU system emulator; default "qemu-system-x86_64".
	Binary string
	// Machine is the -machine type; default "q35".
	Machine string
	// Memory in bytes, a whole number of MiB; default 1 GiB.
	Memory int64
	// CPUs is the number of virtual CPUs; default 2.
	CPUs int
	// CPU is the -cpu model; default "host" under KVM and "max" under TCG (every feature TCG emulates).
	CPU string
	// Accelerator is "kvm" or "tcg"; resolve "auto" with ResolveAccelerator first. Required.
	Accelerator string
	// Firmware is "bios" (SeaBIOS, the default) or "uefi" (OVMF).
	Firmware string
	// OVMFCode and OVMFVars are the UEFI firmware and its variable store template; default Debian's paths.
	// The template is copied into the state folder: the guest writes its boot entries there.
	OVMFCode, OVMFVars string

	// Disk is the VM's disk image, the top of the layer chain. Required.
	Disk string
	// DiskFormat is Disk's format; default "qcow2".
	DiskFormat string
	// DiskCache is the QEMU cache mode of Disk; default "unsafe": guest flushes are not passed on to the
	// host disk. A build is thrown away when it does not finish, so what a host crash could lose is never
	// used; the engine fsyncs each layer file itself when it commits it (a finished layer is read-only in
	// QEMU by then: the snapshot reopened it, writing QEMU's cached metadata out to the file). apt
	// alone issues thousands of fsyncs, which under "writeback" each wait for the host disk. Use
	// "writeback" to keep flushes.
	DiskCache string
	// ExtraDrives are more drive arguments, such as seed.QEMUArgs(iso) for the cloud-init seed.
	ExtraDrives []string
	// ExtraArgs are appended last, for what Options does not cover.
	ExtraArgs []string

	// StateDir is the folder for the serial log, the QMP socket, the pid file and the UEFI variables; it
	// must exist. Required.
	StateDir string
	// NetSocket is where passt's socket goes for NetworkIsolated; default StateDir/net.sock. Start uses a
	// folder of its own under the temporary folder, which passt, running as an unprivileged user, can reach.
	NetSocket string
	// QMPSocket is where the QMP socket goes; default StateDir/qmp.sock. Start uses a short folder under
	// the temporary folder instead when that path is too long for a unix socket.
	QMPSocket string
	// SSHPort is the host port on 127.0.0.1 forwarded to the guest's port 22; 0 lets Start pick a free one.
	SSHPort int
	// Network is NetworkIsolated (the default: passt, no way to the host's loopback) or NetworkUser (QEMU's
	// user-mode network); see passt.go and ResolveNetwork.
	Network string
	// MAC is the NIC's MAC address; empty keeps QEMU's default (52:54:00:12:34:56, the same in every VM).
	MAC string
	// Incoming, when set, is the read end of a pipe that will carry a saved state (migrate.go): QEMU starts
	// paused, waiting for it, instead of booting. Start closes it (QEMU holds its own copy); feed the write
	// end with VM.Restore.
	Incoming *os.File
}

// Files of a VM's state folder.
const (
	SerialLogName = "serial.log"
	QMPSocketName = "qmp.sock"
	PIDFileName   = "qemu.pid"
	OVMFVarsName  = "OVMF_VARS.fd"
)

// withDefaults returns o with every zero field set to its default, or an error for a value QEMU would
// reject later with a less helpful message.
func (o Options) withDefaults() (Options, error) {
	if o.Binary == "" {
		o.Binary = "qemu-system-x86_64"
	}
	if o.Machine == "" {
		o.Machine = "q35"
	}
	if o.Memory == 0 {
		o.Memory = 1 << 30
	}
	if o.CPUs == 0 {
		o.CPUs = 2
	}
	if o.Firmware == "" {
		o.Firmware = FirmwareBIOS
	}
	if o.OVMFCode == "" {
		o.OVMFCode = DefaultOVMFCode
	}
	if o.OVMFVars == "" {
		o.OVMFVars = DefaultOVMFVars
	}
	if o.DiskFormat == "" {
		o.DiskFormat = "qcow2"
	}
	if o.DiskCache == "" {
		o.DiskCache = "unsafe"
	}
	if o.Network == "" {
		o.Network = NetworkIsolated
	}
	var errs []error
	if o.Network != NetworkIsolated && o.Network != NetworkUser {
		errs = append(errs, fmt.Errorf("unknown network %q (%s or %s)", o.Network, NetworkIsolated, NetworkUser))
	}
	switch o.Accelerator {
	case AccelKVM, AccelTCG:
	case "", "auto":
		errs = append(errs, errors.New(`accelerator must be "kvm" or "tcg" (resolve "auto" with ResolveAccelerator)`))
	default:
		errs = append(errs, fmt.Errorf("unknown accelerator %q", o.Accelerator))
	}
	if o.CPU == "" {
		o.CPU = "max"
		if o.Accelerator == AccelKVM {
			o.CPU = "host"
		}
	}
	if o.Firmware != FirmwareBIOS && o.Firmware != FirmwareUEFI {
		errs = append(errs, fmt.Errorf("unknown firmware %q (bios or uefi)", o.Firmware))
	}
	if o.Memory < 0 || o.Memory%(1<<20) != 0 {
		errs = append(errs, fmt.Errorf("memory %d bytes is not a positive whole number of MiB", o.Memory))
	}
	if o.CPUs < 0 {
		errs = append(errs, fmt.Errorf("cpus %d is negative", o.CPUs))
	}
	if o.Disk == "" {
		errs = append(errs, errors.New("no disk"))
	}
	if o.StateDir == "" {
		errs = append(errs, errors.New("no state folder"))
	}
	if o.MAC != "" {
		if hw, err := net.ParseMAC(o.MAC); err != nil || len(hw) != 6 {
			errs = append(errs, fmt.Errorf("MAC address %q is not like 52:54:00:12:34:56", o.MAC))
		}
	}
	if o.SSHPort < 0 || o.SSHPort > 65535 {
		errs = append(errs, fmt.Errorf("SSH port %d out of range", o.SSHPort))
	}
	switch o.DiskCache {
	case "unsafe", "writeback", "none", "writethrough", "directsync":
	default:
		errs = append(errs, fmt.Errorf("unknown disk cache mode %q", o.DiskCache))
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("qemu: options: %w", err)
	}
	return o, nil
}

// absPath makes p absolute, so QEMU, which runs in the state folder, and the backing fields it writes do not
// depend on imgform's working folder.
func absPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("qemu: %w", err)
	}
	return a, nil
}

// escapeOpt doubles commas, QEMU's escape inside an option value: a path with a comma would otherwise end
// the value there and the rest be read as other options.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// fileExists reports whether p names an existing regular file.
func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// MachineOptions returns the Options for the virtual hardware of a configuration's machine block. accel
// is the resolved accelerator ("kvm" or "tcg", see ResolveAccelerator). The caller adds the disk, the seed
// and the state folder.
func MachineOptions(m config.Machine, accel string) Options {
	return Options{
		Machine:     m.Type,
		Memory:      int64(m.Memory),
		CPUs:        m.CPUs,
		CPU:         m.CPU,
		Accelerator: accel,
		Firmware:    m.Firmware,
	}
}

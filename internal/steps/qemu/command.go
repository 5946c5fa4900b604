package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// maxSocketPath is the longest path a unix socket address can hold on Linux (108 bytes with the NUL).
const maxSocketPath = 107

// DiskID is the QEMU drive id of the VM's disk; QMP commands name the disk by it.
const DiskID = "disk0"

// paths are the files of a VM's state folder, as absolute paths.
type paths struct {
	serial, qmp, pid, vars string
	net, passtLog          string // passt's socket and log, for NetworkIsolated
}

func statePaths(o Options) (paths, error) {
	dir, err := absPath(o.StateDir)
	if err != nil {
		return paths{}, err
	}
	p := paths{
		serial: filepath.Join(dir, SerialLogName),
		qmp:    filepath.Join(dir, QMPSocketName),
		pid:    filepath.Join(dir, PIDFileName),
		vars:   filepath.Join(dir, OVMFVarsName),
	}
	if o.QMPSocket != "" {
		if p.qmp, err = absPath(o.QMPSocket); err != nil {
			return paths{}, err
		}
	}
	p.net = filepath.Join(dir, PasstSocketName)
	if o.NetSocket != "" {
		if p.net, err = absPath(o.NetSocket); err != nil {
			return paths{}, err
		}
	}
	p.passtLog = filepath.Join(dir, PasstLogName)
	for _, s := range []string{p.qmp, p.net} {
		if len(s) > maxSocketPath {
			return paths{}, fmt.Errorf("qemu: socket path %s is longer than %d bytes", s, maxSocketPath)
		}
	}
	return p, nil
}

// Command returns the full QEMU command line (argv[0] is the binary) for o. It creates no file; o.SSHPort
// must be set (Start picks one when it is 0).
func Command(o Options) ([]string, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.SSHPort == 0 {
		return nil, fmt.Errorf("qemu: options: no SSH port")
	}
	p, err := statePaths(o)
	if err != nil {
		return nil, err
	}
	disk, err := absPath(o.Disk)
	if err != nil {
		return nil, err
	}
	args := []string{o.Binary,
		"-name", "imgform",
		"-machine", o.Machine,
		"-accel", o.Accelerator,
		"-cpu", o.CPU,
		"-smp", strconv.Itoa(o.CPUs),
		"-m", strconv.FormatInt(o.Memory>>20, 10) + "M",
		// No default devices (VGA, IDE CD-ROM, floppy, default NIC, monitor on stdio) and no host config
		// file: the VM has exactly the hardware below, the same on every machine.
		"-nodefaults", "-no-user-config",
		// -display none, not -nographic: -nographic would also put the serial port and the monitor on
		// stdio, but the serial port goes to a file and the monitor is QMP.
		"-display", "none",
		// No -no-reboot: a provisioner may reboot the guest (reboot = true, expect_disconnect), which then
		// comes back in the same QEMU; a poweroff still ends QEMU, which is how cleanup ends the run.
		"-chardev", "file,id=serial0,path=" + escapeOpt(p.serial),
		"-serial", "chardev:serial0",
		"-qmp", "unix:" + escapeOpt(p.qmp) + ",server=on,wait=off",
		"-pidfile", p.pid,
	}
	if o.Firmware == FirmwareUEFI {
		code, err := absPath(o.OVMFCode)
		if err != nil {
			return nil, err
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+escapeOpt(code),
			"-drive", "if=pflash,format=raw,unit=1,file="+escapeOpt(p.vars))
	}
	args = append(args,
		// discard=unmap passes the guest's TRIM down so freed blocks leave the layer; detect-zeroes=unmap
		// turns written zeros into holes. Both keep layers and exports small.
		"-drive", "file="+escapeOpt(disk)+",if=none,id="+DiskID+",format="+o.DiskFormat+
			",discard=unmap,detect-zeroes=unmap,cache="+o.DiskCache,
		"-device", "virtio-blk-pci,drive="+DiskID+",bootindex=0")
	args = append(args, o.ExtraDrives...)
	nic := "virtio-net-pci,netdev=net0"
	if o.MAC != "" {
		nic += ",mac=" + o.MAC
	}
	// No privileges, no bridge either way. Only 127.0.0.1 is forwarded, never all interfaces: the build key
	// is the only lock on the guest while it builds. passt (passt.go) forwards it for NetworkIsolated.
	netdev := "stream,id=net0,server=off,addr.type=unix,addr.path=" + escapeOpt(p.net)
	if o.Network == NetworkUser {
		netdev = fmt.Sprintf("user,id=net0,hostfwd=tcp:127.0.0.1:%d-:22", o.SSHPort)
	}
	args = append(args,
		"-netdev", netdev,
		"-device", nic,
		// Entropy from the host: without it ssh-keygen and the kernel's random pool wait long under TCG.
		"-device", "virtio-rng-pci",
		// Free page reporting: the guest's virtio_balloon driver hands the host the 2 MiB blocks it has
		// free, QEMU drops them, and they read as zero pages, which a saved state holds as a flag each.
		// After a package upgrade the guest has used nearly all of its RAM; dropping its caches frees it,
		// but free pages keep their old bytes: the example's states were 837 MB of a 1 GiB guest without
		// this (migrate.go, SettleMemory). No balloon target is ever set: the guest keeps all its memory.
		"-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on")
	args = append(args, o.ExtraArgs...)
	if o.Incoming != nil {
		// -S: the guest stays paused after the state is loaded, until Restore has checked all of it.
		args = append(args, "-S", "-incoming", fmt.Sprintf("fd:%d", incomingFD))
	}
	return args, nil
}

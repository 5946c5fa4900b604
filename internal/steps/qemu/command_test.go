package qemu

import (
	"slices"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/config"
)

func TestCommand(t *testing.T) {
	base := Options{Disk: "/img/disk.qcow2", StateDir: "/run/vm", SSHPort: 2222, Accelerator: AccelTCG}
	common := []string{"-nodefaults", "-no-user-config", "-display", "none",
		"-chardev", "file,id=serial0,path=/run/vm/serial.log", "-serial", "chardev:serial0",
		"-qmp", "unix:/run/vm/qmp.sock,server=on,wait=off", "-pidfile", "/run/vm/qemu.pid",
		"-drive", "file=/img/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,detect-zeroes=unmap,cache=unsafe",
		"-device", "virtio-blk-pci,drive=disk0,bootindex=0",
		"-netdev", "stream,id=net0,server=off,addr.type=unix,addr.path=/run/vm/net.sock", "-device", "virtio-net-pci,netdev=net0"}
	cases := map[string]struct {
		opts    func(o *Options)
		want    []string // each pair or single argument must appear, in this order
		notWant []string
	}{
		"tcg defaults": {
			opts: func(o *Options) {},
			want: append([]string{"qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max",
				"-smp", "2", "-m", "1024M"}, common...),
			notWant: []string{"if=pflash"},
		},
		"kvm uses the host cpu": {
			opts: func(o *Options) { o.Accelerator = AccelKVM },
			want: []string{"-accel", "kvm", "-cpu", "host"},
		},
		"explicit cpu model wins": {
			opts: func(o *Options) { o.Accelerator, o.CPU = AccelKVM, "EPYC" },
			want: []string{"-cpu", "EPYC"},
		},
		"machine memory cpus": {
			opts: func(o *Options) { o.Machine, o.Memory, o.CPUs = "pc-q35-7.2", 3<<30, 4 },
			want: []string{"-machine", "pc-q35-7.2", "-smp", "4", "-m", "3072M"},
		},
		"bios has no pflash": {
			opts:    func(o *Options) { o.Firmware = FirmwareBIOS },
			notWant: []string{"if=pflash"},
		},
		"uefi": {
			opts: func(o *Options) { o.Firmware = FirmwareUEFI },
			want: []string{
				"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
				"-drive", "if=pflash,format=raw,unit=1,file=/run/vm/OVMF_VARS.fd",
				"-drive", "file=/img/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,detect-zeroes=unmap,cache=unsafe"},
		},
		"writeback cache": {
			opts: func(o *Options) { o.DiskCache = "writeback" },
			want: []string{"-drive", "file=/img/disk.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,detect-zeroes=unmap,cache=writeback"},
		},
		"commas in paths are escaped": {
			opts: func(o *Options) { o.Disk, o.StateDir = "/img/a,b.qcow2", "/run/v,m" },
			want: []string{"-chardev", "file,id=serial0,path=/run/v,,m/serial.log",
				"-drive", "file=/img/a,,b.qcow2,if=none,id=disk0,format=qcow2,discard=unmap,detect-zeroes=unmap,cache=unsafe"},
		},
		"extra drives then extra args last": {
			opts: func(o *Options) {
				o.ExtraDrives = []string{"-drive", "file=seed.iso,if=none,id=cidata,format=raw,readonly=on"}
				o.ExtraArgs = []string{"-S"}
			},
			want: []string{"-device", "virtio-blk-pci,drive=disk0,bootindex=0",
				"-drive", "file=seed.iso,if=none,id=cidata,format=raw,readonly=on", "-netdev", "-S"},
		},
		"user-mode network forwards only loopback": {
			opts:    func(o *Options) { o.Network = NetworkUser },
			want:    []string{"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22", "-device", "virtio-net-pci,netdev=net0"},
			notWant: []string{"stream,"},
		},
		"passt socket elsewhere": {
			opts: func(o *Options) { o.NetSocket = "/tmp/n,1/net.sock" },
			want: []string{"-netdev", "stream,id=net0,server=off,addr.type=unix,addr.path=/tmp/n,,1/net.sock"},
		},
		"qmp socket elsewhere": {
			opts: func(o *Options) { o.QMPSocket = "/tmp/q/qmp.sock" },
			want: []string{"-qmp", "unix:/tmp/q/qmp.sock,server=on,wait=off"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := base
			tc.opts(&o)
			got, err := Command(o)
			if err != nil {
				t.Fatalf("Command: %v", err)
			}
			if !inOrder(got, tc.want) {
				t.Errorf("argv does not contain, in order:\n%q\ngot:\n%q", tc.want, got)
			}
			for _, nw := range tc.notWant {
				if slices.ContainsFunc(got, func(a string) bool { return strings.Contains(a, nw) }) {
					t.Errorf("argv contains %q: %q", nw, got)
				}
			}
			if slices.Contains(got, "0.0.0.0") || slices.ContainsFunc(got, func(a string) bool {
				return strings.Contains(a, "hostfwd=tcp::") || strings.Contains(a, "hostfwd=tcp:0.0.0.0")
			}) {
				t.Errorf("SSH forwarded on all interfaces: %q", got)
			}
		})
	}
}

func TestCommandRejects(t *testing.T) {
	base := Options{Disk: "/d.qcow2", StateDir: "/s", SSHPort: 22, Accelerator: AccelTCG}
	cases := map[string]struct {
		opts func(o *Options)
		want string
	}{
		"auto accelerator":  {func(o *Options) { o.Accelerator = "auto" }, "ResolveAccelerator"},
		"no accelerator":    {func(o *Options) { o.Accelerator = "" }, "ResolveAccelerator"},
		"bad accelerator":   {func(o *Options) { o.Accelerator = "hvf" }, `unknown accelerator "hvf"`},
		"bad firmware":      {func(o *Options) { o.Firmware = "coreboot" }, `unknown firmware "coreboot"`},
		"odd memory":        {func(o *Options) { o.Memory = 1000 }, "whole number of MiB"},
		"no disk":           {func(o *Options) { o.Disk = "" }, "no disk"},
		"no state folder":   {func(o *Options) { o.StateDir = "" }, "no state folder"},
		"no port":           {func(o *Options) { o.SSHPort = 0 }, "no SSH port"},
		"bad cache":         {func(o *Options) { o.DiskCache = "fast" }, `unknown disk cache mode "fast"`},
		"long QMP path":     {func(o *Options) { o.StateDir = "/" + strings.Repeat("x", 120) }, "longer than 107 bytes"},
		"long passt path":   {func(o *Options) { o.NetSocket = "/" + strings.Repeat("x", 120) }, "longer than 107 bytes"},
		"bad network":       {func(o *Options) { o.Network = "bridge" }, `unknown network "bridge"`},
		"several at a time": {func(o *Options) { o.Disk, o.Firmware = "", "x" }, "no disk"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := base
			tc.opts(&o)
			_, err := Command(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// inOrder reports whether want appears in got as a subsequence.
func inOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

func TestMachineOptions(t *testing.T) {
	m := config.Machine{Type: "pc-q35-7.2", Memory: 2 * config.GiB, CPUs: 3, CPU: "Haswell", Accelerator: "auto", Firmware: "uefi"}
	o := MachineOptions(m, AccelKVM)
	o.Disk, o.StateDir, o.SSHPort = "/d.qcow2", "/s", 2200
	got, err := Command(o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-machine", "pc-q35-7.2", "-accel", "kvm", "-cpu", "Haswell", "-smp", "3", "-m", "2048M",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"}
	if !inOrder(got, want) {
		t.Errorf("argv %q lacks %q", got, want)
	}
}

// Package qemu is imgform's QEMU driver: it builds the command line of the build VM, starts QEMU so that it
// never outlives imgform, talks QMP to it (status, external snapshots, power-down), and picks the
// accelerator.
//
// Every VM gets a state folder that holds what belongs to this run only: the serial console log, the QMP
// socket, the pid file and, for UEFI, the writable copy of the firmware variables. Disks live elsewhere
// (the engine's layer chain); img.go creates and inspects them with qemu-img.
//
// Disk layers are cut while the VM runs: after the guest has synced its file systems, Snapshot switches the
// VM to a new overlay with QMP blockdev-add and blockdev-snapshot, and the overlay it wrote until then becomes a
// read-only backing file, which is the finished layer. See Snapshot for what the backing path looks like
// afterwards and how to make it relative.
package qemu

package seed

import "strings"

// DriveID is the QEMU drive and device id QEMUArgs gives the seed.
const DriveID = "cidata"

// QEMUArgs returns the QEMU arguments that attach the seed ISO at isoPath as a read-only virtio block device.
//
// It is deliberately not an IDE or SATA CD-ROM: Debian's cloud kernel has no AHCI driver, so on the q35
// machine type an IDE CD-ROM stays invisible to the guest and cloud-init falls back to DataSourceNone. Every
// cloud kernel has virtio-blk, and cloud-init finds the seed by its "cidata" label whatever the device type.
// readonly=on keeps the guest from writing to the cached seed.
func QEMUArgs(isoPath string) []string {
	return []string{
		"-drive", "file=" + escapeOpt(isoPath) + ",if=none,id=" + DriveID + ",format=raw,readonly=on",
		"-device", "virtio-blk-pci,drive=" + DriveID,
	}
}

// escapeOpt doubles commas, QEMU's escape inside an option value; a path with a comma would otherwise be
// cut short and the rest read as another option.
func escapeOpt(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}

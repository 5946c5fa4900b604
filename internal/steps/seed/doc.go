// Package seed makes the cloud-init NoCloud seed: a small ISO9660 image labelled "cidata" that holds
// user-data, meta-data and, when given, network-config and vendor-data at its root.
//
// The image is written in-process with go-diskfs, so a build needs no xorriso or genisoimage. Rock Ridge
// names carry the exact file names ("user-data" is not a valid ISO9660 name and would otherwise show up as
// "user_dat."). The output is byte-for-byte deterministic: go-diskfs stamps the volume descriptors with the
// current time and copies host ownership and inode times into Rock Ridge entries, so Build rewrites those
// fields to fixed values after go-diskfs is done (see normalize.go). Step keys should still be computed from
// the inputs and FormatVersion, never from the ISO bytes: the inputs are known at plan time, the ISO is not.
package seed

package fetch

import (
	"context"
	"fmt"
	"io"
	"os"

	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

// inspectDisk says what a downloaded file is, trusting nothing in it: its format from its first bytes
// (qcow2 or raw, never guessed by qemu), a qcow2 image only when it names no other file (a backing file or
// an external data file would make QEMU read a file of this host into the image), a raw file only with a
// partition table (an MBR boot signature; GPT disks carry a protective MBR), since qemu-img calls any file
// a raw image. Only then does qemu-img read it, with the format given.
func inspectDisk(ctx context.Context, path string) (qemu.ImageInfo, error) {
	format, err := qemu.ProbeFormat(path)
	if err != nil {
		return qemu.ImageInfo{}, err
	}
	switch format {
	case "qcow2":
		if err := qemu.CheckStandalone(path, format); err != nil {
			return qemu.ImageInfo{}, err
		}
	case "raw":
		ok, err := hasBootSignature(path)
		if err != nil {
			return qemu.ImageInfo{}, err
		}
		if !ok {
			return qemu.ImageInfo{}, fmt.Errorf("not a disk image: neither qcow2 nor raw data with a partition table (no boot signature at byte 510); convert other formats with qemu-img convert -O qcow2")
		}
	}
	return qemu.InfoAs(ctx, path, format)
}

func hasBootSignature(path string) (ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	buf := make([]byte, 512)
	if _, err := io.ReadFull(f, buf); err != nil {
		return false, nil
	}
	return buf[510] == 0x55 && buf[511] == 0xAA, nil
}

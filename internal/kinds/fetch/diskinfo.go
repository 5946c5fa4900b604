package fetch

import (
	"context"
	"fmt"
	"io"
	"os"

	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

// inspectDisk asks qemu-img (through steps/qemu) what a file is. qemu-img calls any file a raw image, so a
// raw file must also carry a partition table (an MBR boot signature; GPT disks carry a protective MBR) to
// count as a disk.
func inspectDisk(ctx context.Context, path string) (qemu.ImageInfo, error) {
	info, err := qemu.Info(ctx, path)
	if err != nil {
		return qemu.ImageInfo{}, err
	}
	switch info.Format {
	case "qcow2":
		return info, nil
	case "raw":
		ok, err := hasBootSignature(path)
		if err != nil {
			return qemu.ImageInfo{}, err
		}
		if !ok {
			return qemu.ImageInfo{}, fmt.Errorf("not a disk image: qemu-img sees raw data without a partition table (no boot signature at byte 510)")
		}
		return info, nil
	}
	return qemu.ImageInfo{}, fmt.Errorf("unsupported image format %q: use a qcow2 or raw disk image", info.Format)
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

package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

type diskInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

// inspectDisk asks qemu-img what a file is. qemu-img calls any file a raw image, so a raw file must also
// carry a partition table (an MBR boot signature; GPT disks carry a protective MBR) to count as a disk.
func inspectDisk(ctx context.Context, path string) (diskInfo, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return diskInfo{}, fmt.Errorf("qemu-img is not installed (apt-get install qemu-utils): %w", err)
		}
		return diskInfo{}, fmt.Errorf("qemu-img info: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var info diskInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return diskInfo{}, fmt.Errorf("qemu-img info: %w", err)
	}
	switch info.Format {
	case "qcow2":
		return info, nil
	case "raw":
		ok, err := hasBootSignature(path)
		if err != nil {
			return diskInfo{}, err
		}
		if !ok {
			return diskInfo{}, fmt.Errorf("not a disk image: qemu-img sees raw data without a partition table (no boot signature at byte 510)")
		}
		return info, nil
	}
	return diskInfo{}, fmt.Errorf("unsupported image format %q: use a qcow2 or raw disk image", info.Format)
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

package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// QemuImg is the qemu-img command the functions of this file run.
const QemuImg = "qemu-img"

// ImageInfo is what qemu-img reports about one image of a chain.
type ImageInfo struct {
	Filename    string `json:"filename"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
	// BackingFilename is the backing field as written in the image, relative or absolute.
	BackingFilename string `json:"backing-filename"`
	// FullBackingFilename is BackingFilename resolved against the image's folder.
	FullBackingFilename string `json:"full-backing-filename"`
	BackingFormat       string `json:"backing-filename-format"`
	DirtyFlag           bool   `json:"dirty-flag"`
}

// CreateOverlay creates a qcow2 image at path whose backing file is backing (format backingFormat). A
// relative backing path is relative to path's folder, as qemu-img and QEMU read it, which keeps a layer
// chain movable as a whole. size 0 keeps the backing file's virtual size; a larger size grows the disk (the
// guest's growpart and resize2fs take the space on boot); a smaller one is refused, as it would cut off the
// end of the file system.
func CreateOverlay(ctx context.Context, path, backing, backingFormat string, size int64) error {
	if backingFormat == "" {
		return fmt.Errorf("qemu-img: create %s: backing format not given", path)
	}
	if _, err := runQemuImg(ctx, "create", "-q", "-f", "qcow2", "-F", backingFormat, "-b", backing, path); err != nil {
		return err
	}
	if size == 0 {
		return nil
	}
	if err := Resize(ctx, path, size); err != nil {
		if rerr := os.Remove(path); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return nil
}

// Resize grows the virtual size of the image at path to size bytes. It never shrinks: a size below the
// current one is an error.
func Resize(ctx context.Context, path string, size int64) error {
	info, err := Info(ctx, path)
	if err != nil {
		return err
	}
	switch {
	case size < info.VirtualSize:
		return fmt.Errorf("qemu-img: resize %s: %d bytes is smaller than its virtual size %d; disks are never shrunk",
			path, size, info.VirtualSize)
	case size == info.VirtualSize:
		return nil
	}
	_, err = runQemuImg(ctx, "resize", "-q", path, strconv.FormatInt(size, 10))
	return err
}

// Info returns what qemu-img knows about the image at path. It passes -U (force share), so it also works
// on an image a running QEMU has open; what it reads then may lag behind the guest's latest writes.
func Info(ctx context.Context, path string) (ImageInfo, error) {
	out, err := runQemuImg(ctx, "info", "-U", "--output=json", path)
	if err != nil {
		return ImageInfo{}, err
	}
	var info ImageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return ImageInfo{}, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return info, nil
}

// BackingChain returns path's image and each backing file below it, top first.
func BackingChain(ctx context.Context, path string) ([]ImageInfo, error) {
	out, err := runQemuImg(ctx, "info", "-U", "--output=json", "--backing-chain", path)
	if err != nil {
		return nil, err
	}
	var chain []ImageInfo
	if err := json.Unmarshal(out, &chain); err != nil {
		return nil, fmt.Errorf("qemu-img info --backing-chain %s: %w", path, err)
	}
	return chain, nil
}

// Rebase rewrites the backing field of the image at path to backing (format backingFormat) without
// touching any data (qemu-img rebase -u). It is only correct when the new name points at the same content,
// such as an absolute path replaced by a relative one. The image must not be open in a running QEMU.
func Rebase(ctx context.Context, path, backing, backingFormat string) error {
	_, err := runQemuImg(ctx, "rebase", "-u", "-F", backingFormat, "-b", backing, path)
	return err
}

// RelativizeBacking rewrites an absolute backing path of the image at path as a path relative to path's
// folder (see Rebase), so that the layer chain can move as a whole. It returns the new backing field.
func RelativizeBacking(ctx context.Context, path string) (string, error) {
	info, err := Info(ctx, path)
	if err != nil {
		return "", err
	}
	if info.BackingFilename == "" {
		return "", fmt.Errorf("qemu-img: %s has no backing file", path)
	}
	if !filepath.IsAbs(info.BackingFilename) {
		return info.BackingFilename, nil
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return "", fmt.Errorf("qemu-img: %w", err)
	}
	rel, err := filepath.Rel(dir, info.BackingFilename)
	if err != nil {
		return "", fmt.Errorf("qemu-img: %w", err)
	}
	format := info.BackingFormat
	if format == "" {
		format = "qcow2"
	}
	if err := Rebase(ctx, path, rel, format); err != nil {
		return "", err
	}
	return rel, nil
}

// runQemuImg runs qemu-img and returns its standard output, or an error with its standard error.
func runQemuImg(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, QemuImg, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no message"
		}
		return nil, fmt.Errorf("qemu-img %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

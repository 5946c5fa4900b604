package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"gitlab.com/imgform/imgform/internal/debuglog"
)

// QemuImg is the qemu-img command the functions of this file run.
const QemuImg = "qemu-img"

// ImageInfo is what qemu-img reports about one image of a chain.
type ImageInfo struct {
	Filename    string `json:"filename"`
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
	ClusterSize int64  `json:"cluster-size"` // qcow2 only
	// BackingFilename is the backing field as written in the image, relative or absolute.
	BackingFilename string `json:"backing-filename"`
	BackingFormat   string `json:"backing-filename-format"`
}

// LayerClusters is the qcow2 cluster size (bytes) of a layer stacked on a booted system: such a layer takes
// small writes scattered over the disk (the journal, inodes, a config file, the zeros the cleanup writes
// over free blocks), and a write smaller than a cluster copies the whole cluster from the layers below.
// With qemu-img's default of 64 KiB, the cleanup's zeroing of the example's free blocks made a 117 MB layer
// of copied clusters whose free blocks it zeroed; at the file systems' 4 KiB block size each zeroed block
// is a zero cluster (a flag, no data: detect-zeroes=unmap). A first boot, which writes packages in large
// runs, keeps the default.
const LayerClusters = 4096

// CreateOverlay creates a qcow2 image at path whose backing file is backing (format backingFormat). A
// relative backing path is relative to path's folder, as qemu-img and QEMU read it, which keeps a layer
// chain movable as a whole. size 0 keeps the backing file's virtual size; a larger size grows the disk (the
// guest's growpart and resize2fs take the space on boot); a smaller one is refused, as it would cut off the
// end of the file system. cluster is the qcow2 cluster size in bytes (0: qemu-img's default).
func CreateOverlay(ctx context.Context, path, backing, backingFormat string, size, cluster int64) error {
	if backingFormat == "" {
		return fmt.Errorf("qemu-img: create %s: backing format not given", path)
	}
	if _, err := runQemuImg(ctx, append(createArgs(backing, backingFormat, cluster), path)...); err != nil {
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

// CreateOverlayUnchecked creates a qcow2 image at path whose backing field is backing without opening it
// (qemu-img create -u): for a layer stacked on one that is not yet where backing points (it moves there
// when committed). size must be the backing file's virtual size, as qemu-img cannot read it. cluster is
// as for CreateOverlay.
func CreateOverlayUnchecked(ctx context.Context, path, backing, backingFormat string, size, cluster int64) error {
	if backingFormat == "" || size <= 0 {
		return fmt.Errorf("qemu-img: create %s: backing format and size are needed without a backing file to read", path)
	}
	args := append(createArgs(backing, backingFormat, cluster), "-u", path, strconv.FormatInt(size, 10))
	_, err := runQemuImg(ctx, args...)
	return err
}

// createArgs is qemu-img's command line for a qcow2 overlay; the caller appends the path and a size.
func createArgs(backing, backingFormat string, cluster int64) []string {
	args := []string{"create", "-q", "-f", "qcow2", "-F", backingFormat, "-b", backing}
	if cluster > 0 {
		args = append(args, "-o", "cluster_size="+strconv.FormatInt(cluster, 10))
	}
	return args
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
	return info(ctx, path)
}

// InfoAs is Info with the format given, so that qemu-img does not guess it.
func InfoAs(ctx context.Context, path, format string) (ImageInfo, error) {
	return info(ctx, path, "-f", format)
}

func info(ctx context.Context, path string, opts ...string) (ImageInfo, error) {
	args := append(append([]string{"info", "-U"}, opts...), "--output=json", path)
	out, err := runQemuImg(ctx, args...)
	if err != nil {
		return ImageInfo{}, err
	}
	info, err := parseImageInfo(out)
	if err != nil {
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
	chain, err := parseBackingChain(out)
	if err != nil {
		return nil, fmt.Errorf("qemu-img info --backing-chain %s: %w", path, err)
	}
	return chain, nil
}

// parseImageInfo decodes what qemu-img info --output=json printed about one image.
func parseImageInfo(out []byte) (ImageInfo, error) {
	var info ImageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return ImageInfo{}, err
	}
	return info, info.check()
}

// parseBackingChain decodes what qemu-img info --output=json --backing-chain printed: the images from the
// top down, each but the last naming a backing file.
func parseBackingChain(out []byte) ([]ImageInfo, error) {
	var chain []ImageInfo
	if err := json.Unmarshal(out, &chain); err != nil {
		return nil, err
	}
	if len(chain) == 0 {
		return nil, errors.New("no image in the chain")
	}
	for i, info := range chain {
		if err := info.check(); err != nil {
			return nil, fmt.Errorf("image %d of the chain: %w", i+1, err)
		}
		switch last := i == len(chain)-1; {
		case last && info.BackingFilename != "":
			return nil, fmt.Errorf("the last image of the chain (%d) names a backing file", len(chain))
		case !last && info.BackingFilename == "":
			return nil, fmt.Errorf("image %d of %d of the chain names no backing file", i+1, len(chain))
		}
	}
	return chain, nil
}

// check rejects what qemu-img does not print about an image it could open, such as the empty ImageInfo
// that "null" or "{}" decode to.
func (i ImageInfo) check() error {
	if i.Format == "" {
		return errors.New("no format")
	}
	if i.VirtualSize < 0 || i.ActualSize < 0 {
		return fmt.Errorf("negative size (virtual %d, actual %d bytes)", i.VirtualSize, i.ActualSize)
	}
	return nil
}

// runQemuImg runs qemu-img and returns its standard output, or an error with its standard error.
func runQemuImg(ctx context.Context, args ...string) ([]byte, error) {
	debuglog.Debugf("qemu-img", "%s", quoteArgs(append([]string{QemuImg}, args...)))
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

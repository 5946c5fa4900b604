package qemu_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

// TestCompressLayer compresses a layer with 4 KiB clusters over a base in another folder, written with
// compressible data, a zeroed range over the base's data and a range left to the base: the rewritten layer
// reads exactly as before through its chain, keeps its backing field and cluster size, is smaller, and its
// data clusters are compressed.
func TestCompressLayer(t *testing.T) {
	needQEMU(t)
	qemuIO, err := exec.LookPath("qemu-io")
	if err != nil {
		t.Fatal("qemu-io not found: it comes with qemu-utils (scripts/install-deps.sh)")
	}
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "base"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := blankDiskNamed(t, filepath.Join(dir, "base"), "disk.qcow2")
	io := func(img string, cmds ...string) {
		t.Helper()
		args := []string{"-f", "qcow2"}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		if out, err := exec.Command(qemuIO, append(args, img)...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-io %v: %v\n%s", cmds, err, out)
		}
	}
	io(base, "write -P 0x11 0 8M")
	if err := os.Mkdir(filepath.Join(dir, "layer"), 0o755); err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(dir, "layer", "disk.qcow2")
	if err := qemu.CreateOverlay(ctx, layer, "../base/disk.qcow2", "qcow2", 0, qemu.LayerClusters); err != nil {
		t.Fatal(err)
	}
	io(layer, "write -P 0x22 1M 6M", "write -z 2M 1M", "write -P 0x33 9000 100")
	before := filepath.Join(dir, "before.qcow2")
	copyFile(t, layer, before)
	beforeInfo, err := qemu.Info(ctx, layer)
	if err != nil {
		t.Fatal(err)
	}

	if err := qemu.CompressLayer(ctx, layer); err != nil {
		t.Fatal(err)
	}
	after, err := qemu.Info(ctx, layer)
	if err != nil {
		t.Fatal(err)
	}
	if after.BackingFilename != "../base/disk.qcow2" || after.BackingFormat != "qcow2" || after.ClusterSize != qemu.LayerClusters {
		t.Errorf("after compression: backing %q (%s), clusters %d; want ../base/disk.qcow2 (qcow2), %d",
			after.BackingFilename, after.BackingFormat, after.ClusterSize, qemu.LayerClusters)
	}
	if after.ActualSize*2 > beforeInfo.ActualSize {
		t.Errorf("compressed layer takes %d bytes, was %d; want less than half", after.ActualSize, beforeInfo.ActualSize)
	}
	// The copy's backing field resolves from its own folder: compare both through their chains.
	if err := os.Rename(before, filepath.Join(dir, "layer", "before.qcow2")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(qemu.QemuImg, "compare", "-f", "qcow2", "-F", "qcow2",
		filepath.Join(dir, "layer", "before.qcow2"), layer).CombinedOutput(); err != nil {
		t.Fatalf("the compressed layer reads differently: %v\n%s", err, out)
	}
	out, err := exec.Command(qemu.QemuImg, "check", layer).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "compressed clusters") || strings.Contains(string(out), " 0.00% compressed") {
		t.Errorf("qemu-img check after compression: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "layer")); len(entries) != 2 {
		t.Errorf("the layer's folder holds %v, want the layer and the copy only", entries)
	}

	// An image without a backing file is no layer: refused, left as it was, nothing else written.
	if err := qemu.CompressLayer(ctx, base); err == nil || !strings.Contains(err.Error(), "not a layer") {
		t.Errorf("CompressLayer of a base image = %v, want a refusal", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "base")); len(entries) != 1 {
		t.Errorf("the base's folder holds %v, want the base only", entries)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

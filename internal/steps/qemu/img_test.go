package qemu_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

func TestOverlays(t *testing.T) {
	needQEMU(t)
	ctx := context.Background()
	cases := map[string]struct {
		backing  func(dir, base string) string // the -b argument
		size     int64
		wantSize int64
		wantErr  string
	}{
		"relative backing, same size": {backing: func(_, _ string) string { return "base.qcow2" }, wantSize: 64 << 20},
		"absolute backing, grown":     {backing: func(_, base string) string { return base }, size: 1 << 30, wantSize: 1 << 30},
		"backing in a parent folder": {backing: func(dir, base string) string {
			rel, err := filepath.Rel(filepath.Join(dir, "sub"), base)
			if err != nil {
				panic(err) // both paths are absolute
			}
			return rel
		}, wantSize: 64 << 20},
		"shrinking is refused":        {backing: func(_, _ string) string { return "base.qcow2" }, size: 32 << 20, wantErr: "never shrunk"},
		"missing backing is an error": {backing: func(_, _ string) string { return "nope.qcow2" }, wantErr: "nope.qcow2"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			base := blankDiskNamed(t, dir, "base.qcow2")
			if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			top := filepath.Join(dir, "top.qcow2")
			if strings.Contains(name, "parent") {
				top = filepath.Join(dir, "sub", "top.qcow2")
			}
			err := qemu.CreateOverlay(ctx, top, tc.backing(dir, base), "qcow2", tc.size, 0)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if _, err := os.Stat(top); err == nil {
					t.Errorf("a failed CreateOverlay left %s behind", top)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			chain, err := qemu.BackingChain(ctx, top)
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != 2 || filepath.Clean(chain[1].Filename) != base {
				t.Fatalf("chain %+v, want top over %s", chain, base)
			}
			if chain[0].VirtualSize != tc.wantSize {
				t.Errorf("virtual size %d, want %d", chain[0].VirtualSize, tc.wantSize)
			}
			if chain[0].BackingFilename != tc.backing(dir, base) {
				t.Errorf("backing field %q, want it as given, %q", chain[0].BackingFilename, tc.backing(dir, base))
			}
		})
	}
}

// TestCreateOverlayUnchecked: a layer can name its backing file by a path where that file arrives only
// later (the VM runner commits the previous layer after the next one exists).
func TestCreateOverlayUnchecked(t *testing.T) {
	needQEMU(t)
	ctx := context.Background()
	dir := t.TempDir()
	base := blankDiskNamed(t, dir, "base.qcow2")
	info, err := qemu.Info(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "layers", "top.qcow2")
	if err := os.Mkdir(filepath.Dir(top), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := qemu.CreateOverlayUnchecked(ctx, top, "../committed/base.qcow2", "qcow2", 0, 0); err == nil {
		t.Error("an unchecked overlay without a size was created")
	}
	if err := qemu.CreateOverlayUnchecked(ctx, top, "../committed/base.qcow2", "qcow2", info.VirtualSize, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := qemu.BackingChain(ctx, top); err == nil {
		t.Error("the chain resolved before its backing file arrived")
	}
	if err := os.Mkdir(filepath.Join(dir, "committed"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(base, filepath.Join(dir, "committed", "base.qcow2")); err != nil {
		t.Fatal(err)
	}
	chain, err := qemu.BackingChain(ctx, top)
	if err != nil {
		t.Fatalf("chain after the backing file arrived: %v", err)
	}
	if len(chain) != 2 || chain[0].BackingFilename != "../committed/base.qcow2" || chain[0].VirtualSize != info.VirtualSize {
		t.Errorf("chain: %+v", chain)
	}
}

func blankDiskNamed(t *testing.T, dir, name string) string {
	t.Helper()
	p := blankDisk(t, dir)
	dst := filepath.Join(dir, name)
	if err := os.Rename(p, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

package export

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// mountFull mounts a 2 MiB tmpfs on a new folder, a disk that fills up at once. It needs root (or
// CAP_SYS_ADMIN); elsewhere the test is skipped, since no unprivileged way gives a full file system.
func mountFull(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a small tmpfs to fill up needs root, and this test runs as an unprivileged user")
	}
	dir := filepath.Join(t.TempDir(), "full")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs even as root (a container without CAP_SYS_ADMIN?): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestExportNoSpace exports an image larger than the room left and checks the message, that nothing
// partial is left on the full disk, and that an existing output is untouched.
func TestExportNoSpace(t *testing.T) {
	// 8 MiB of random data: neither qcow2 nor zstd gets it under 2 MiB.
	src := makeSource(t, t.TempDir(), 32*MiB, 8*MiB)
	cases := map[string]struct {
		format, compression string
		destOnFull          bool // else TempDir is on the full disk
	}{
		"raw/none, output on the full disk":         {FormatRaw, CompressionNone, true},
		"qcow2/qcow2-zstd, output on the full disk": {FormatQcow2, CompressionQcow2Zstd, true},
		"qcow2/zstd, output on the full disk":       {FormatQcow2, CompressionZstd, true},
		"raw/zstd, intermediate on the full disk":   {FormatRaw, CompressionZstd, false},
		"qcow2/zstd, intermediate on the full disk": {FormatQcow2, CompressionZstd, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			full := mountFull(t)
			other := t.TempDir()
			req := Request{Source: src, Format: tc.format, Compression: tc.compression}
			if tc.destOnFull {
				req.Dest, req.TempDir = filepath.Join(full, "disk"), other
			} else {
				req.Dest, req.TempDir = filepath.Join(other, "disk"), full
			}
			// The previous output, which a failed export must leave as it was.
			old := []byte("previous export\n")
			if err := os.WriteFile(req.Dest, old, 0o644); err != nil {
				t.Fatal(err)
			}

			_, err := Export(context.Background(), req)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err)
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("errors.Is(err, ENOSPC) is false for %v", err)
			}
			if !strings.Contains(err.Error(), "no space left on device while writing ") ||
				!strings.Contains(err.Error(), "(needed about ") {
				t.Errorf("error %q does not say which file needed how much", err)
			}
			var ns *NoSpaceError
			if errors.As(err, &ns) && ns.Needed <= 2*MiB {
				t.Errorf("needed %d bytes: the estimate is below what did not fit", ns.Needed)
			}
			if got, err := os.ReadFile(req.Dest); err != nil || !bytes.Equal(got, old) {
				t.Errorf("the previous output was changed: %q, %v", got, err)
			}
			for _, dir := range []string{full, other} {
				want := []string{}
				if filepath.Dir(req.Dest) == dir {
					want = []string{"disk"}
				}
				if got := listDir(t, dir); !slices.Equal(got, want) {
					t.Errorf("files in %s: %v, want %v", dir, got, want)
				}
			}
		})
	}
}

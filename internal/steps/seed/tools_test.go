package seed

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests read the seed with the tools a guest or an operator uses, to catch what go-diskfs reading
// its own output would not. Each skips, saying why, when its tool or privilege is missing.

func TestLabelBlkid(t *testing.T) {
	blkid := needTool(t, "blkid", "util-linux")
	for name, files := range buildCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			iso := buildISO(t, files)
			// This is the probe udev and cloud-init's ds-identify use to find the seed.
			got := strings.TrimSpace(string(run(t, blkid, "-p", "-o", "value", "-s", "LABEL", iso)))
			if got != Label {
				t.Errorf("blkid LABEL = %q, want %q", got, Label)
			}
			if typ := strings.TrimSpace(string(run(t, blkid, "-p", "-o", "value", "-s", "TYPE", iso))); typ != "iso9660" {
				t.Errorf("blkid TYPE = %q, want iso9660", typ)
			}
		})
	}
}

func TestReadBackIsoinfo(t *testing.T) {
	isoinfo := needTool(t, "isoinfo", "genisoimage")
	for name, files := range buildCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			iso := buildISO(t, files)
			if d := string(run(t, isoinfo, "-d", "-i", iso)); !strings.Contains(d, "Rock Ridge signatures") {
				t.Errorf("isoinfo finds no Rock Ridge:\n%s", d)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(string(run(t, isoinfo, "-R", "-f", "-i", iso))), "\n") {
				got = append(got, strings.TrimPrefix(l, "/"))
			}
			slices.Sort(got)
			want := wantFiles(files)
			var names []string
			for n := range want {
				names = append(names, n)
			}
			slices.Sort(names)
			if !slices.Equal(got, names) {
				t.Fatalf("isoinfo -R names = %q, want %q", got, names)
			}
			for n, w := range want {
				if b := run(t, isoinfo, "-R", "-x", "/"+n, "-i", iso); !bytes.Equal(b, w) {
					t.Errorf("isoinfo %s: %d bytes that differ from the %d written", n, len(b), len(w))
				}
			}
			checkListing(t, string(run(t, isoinfo, "-R", "-l", "-i", iso)))
		})
	}
}

// checkListing checks the Rock Ridge attributes normalize sets, as isoinfo -R -l prints them:
// "-r--r--r--   1    0    0   15 Jan  1 1970 [     22 00]  meta-data".
func checkListing(t *testing.T, listing string) {
	t.Helper()
	n := 0
	for _, l := range strings.Split(listing, "\n") {
		f := strings.Fields(l)
		if len(f) < 8 || (f[0][0] != '-' && f[0][0] != 'd') {
			continue
		}
		n++
		wantMode, wantLinks := "-r--r--r--", "1"
		if f[0][0] == 'd' {
			wantMode, wantLinks = "dr-xr-xr-x", "2"
		}
		got := strings.Join(append([]string{f[0], f[1], f[2], f[3]}, f[5:8]...), " ")
		if want := strings.Join([]string{wantMode, wantLinks, "0", "0", "Jan", "1", "1970"}, " "); got != want {
			t.Errorf("isoinfo entry %q: got %q, want %q", l, got, want)
		}
	}
	if n < 4 {
		t.Errorf("isoinfo -l listed %d entries, want at least 4:\n%s", n, listing)
	}
}

// TestLoopMount mounts the seed with the kernel's iso9660 driver, as cloud-init does in the guest.
func TestLoopMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loop mounting needs root; the go-diskfs read-back still ran")
	}
	mount := needTool(t, "mount", "mount")
	umount := needTool(t, "umount", "mount")
	for name, files := range buildCases() {
		t.Run(name, func(t *testing.T) {
			// Not parallel: each mount takes a loop device.
			iso := buildISO(t, files)
			mnt := t.TempDir()
			out, err := exec.Command(mount, "-o", "loop,ro", "-t", "iso9660", iso, mnt).CombinedOutput()
			if err != nil {
				if bytes.Contains(out, []byte("unknown filesystem type")) {
					t.Skipf("this kernel has no iso9660 driver: %s", bytes.TrimSpace(out))
				}
				t.Fatalf("mount: %v\n%s", err, out)
			}
			t.Cleanup(func() {
				if out, err := exec.Command(umount, mnt).CombinedOutput(); err != nil {
					t.Errorf("umount: %v\n%s", err, out)
				}
			})
			des, err := os.ReadDir(mnt)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, de := range des {
				got = append(got, de.Name())
			}
			want := wantFiles(files)
			var names []string
			for n := range want {
				names = append(names, n)
			}
			slices.Sort(names)
			if !slices.Equal(got, names) {
				t.Fatalf("mounted names = %q, want %q", got, names)
			}
			for n, w := range want {
				b, err := os.ReadFile(filepath.Join(mnt, n))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(b, w) {
					t.Errorf("mounted %s: %d bytes that differ from the %d written", n, len(b), len(w))
				}
			}
		})
	}
}

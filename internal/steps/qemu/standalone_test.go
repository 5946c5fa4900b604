package qemu_test

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

func qemuImg(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(qemu.QemuImg, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
	}
}

// A source from a mirror must not name any other file: a backing file by path or protocol, or an external
// data file, would make QEMU read a file of the build host into the image. The check reads the header
// itself, so no qemu tool opens what the image names.
func TestCheckStandalone(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-secret")
	if err := os.WriteFile(secret, []byte("a file of the build host\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "plain.qcow2", "16M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "v2.qcow2", "16M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", "backing.qcow2", "16M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", secret, "-F", "raw", "backing-v2.qcow2", "16M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-u", "-b", `json:{"file":{"driver":"nbd","host":"127.0.0.1"}}`, "-F", "raw", "json.qcow2", "16M")
	qemuImg(t, dir, "create", "-q", "-f", "qcow2", "-o", "data_file="+secret+",data_file_raw=on", "datafile.qcow2", "16M")
	if err := os.WriteFile(filepath.Join(dir, "disk.raw"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"plain.qcow2": "", "v2.qcow2": "", "disk.raw": "",
		"backing.qcow2":    "names a backing file (\"" + secret + "\")",
		"backing-v2.qcow2": "names a backing file",
		"json.qcow2":       "names a backing file (\"json:",
		"datafile.qcow2":   "external data file",
	} {
		path := filepath.Join(dir, name)
		format, err := qemu.ProbeFormat(path)
		if err != nil {
			t.Fatal(err)
		}
		if wantFormat := map[bool]string{true: "raw", false: "qcow2"}[strings.HasSuffix(name, ".raw")]; format != wantFormat {
			t.Errorf("%s: format %s, want %s", name, format, wantFormat)
		}
		err = qemu.CheckStandalone(path, format)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want one with %q", name, err, want)
		case want != "" && !strings.Contains(err.Error(), "qemu-img convert"):
			t.Errorf("%s: the error does not say how to fix it: %v", name, err)
		}
	}
}

// A layer chain may only reach files below the store's folder, by plain paths.
func TestCheckChainWithin(t *testing.T) {
	needQEMU(t)
	root := t.TempDir()
	outside := t.TempDir()
	for _, p := range []string{"a", "b", "c"} {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "host.raw"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "a/disk.qcow2", "16M")
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-b", "../a/disk.qcow2", "-F", "qcow2", "b/disk.qcow2")
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-b", "../b/disk.qcow2", "-F", "qcow2", "c/disk.qcow2")
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-b", filepath.Join(outside, "host.raw"), "-F", "raw", "a/evil.qcow2")
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-b", "../a/evil.qcow2", "-F", "qcow2", "b/on-evil.qcow2")
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-u", "-b", "nbd://127.0.0.1:10809", "-F", "raw", "c/nbd.qcow2", "16M")
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-u", "-b", "../../"+filepath.Base(root)+"-other/x.qcow2", "-F", "qcow2", "c/escape.qcow2", "16M")
	// A backing format other than qcow2 or raw, or none over a file that is not qcow2 (QEMU would guess).
	if err := os.WriteFile(filepath.Join(root, "a", "plain.raw"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-u", "-b", "../a/disk.qcow2", "-F", "vmdk", "b/as-vmdk.qcow2", "16M")
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-b", "../a/plain.raw", "-F", "raw", "b/unnamed-raw.qcow2")
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-b", "../a/disk.qcow2", "-F", "qcow2", "b/unnamed-qcow2.qcow2")
	dropBackingFormat(t, filepath.Join(root, "b", "unnamed-raw.qcow2"))
	dropBackingFormat(t, filepath.Join(root, "b", "unnamed-qcow2.qcow2"))
	// A symbolic link inside the cache that leads out of it.
	if err := os.Symlink(filepath.Join(outside, "host.raw"), filepath.Join(root, "a", "link.raw")); err != nil {
		t.Fatal(err)
	}
	qemuImg(t, root, "create", "-q", "-f", "qcow2", "-b", "../a/link.raw", "-F", "raw", "b/on-link.qcow2")
	for name, want := range map[string]string{
		"c/disk.qcow2":           "",
		"a/disk.qcow2":           "",
		"b/on-evil.qcow2":        "is outside the cache",
		"c/nbd.qcow2":            "through a protocol",
		"c/escape.qcow2":         "is outside the cache",
		"b/as-vmdk.qcow2":        `reads its backing file as "vmdk"`,
		"b/unnamed-raw.qcow2":    "without a format, and that file is not qcow2",
		"b/unnamed-qcow2.qcow2":  "",
		"b/on-link.qcow2":        "outside the cache",
		"a/link.raw":             "outside the cache",
		"b/../a/../c/disk.qcow2": "",
	} {
		err := qemu.CheckChainWithin(filepath.Join(root, name), root)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want one with %q", name, err, want)
		}
	}
	if err := qemu.CheckChainWithin(filepath.Join(outside, "host.raw"), root); err == nil {
		t.Error("a disk outside the cache passed")
	}
}

// dropBackingFormat ends the header extensions of a qcow2 version 3 image before its first one, the backing
// format that qemu-img always writes: what an image made by another tool may look like.
func dropBackingFormat(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var b [104]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		t.Fatal(err)
	}
	headerLength := int64(binary.BigEndian.Uint32(b[100:104]))
	var ext [4]byte
	if _, err := f.ReadAt(ext[:], headerLength); err != nil || binary.BigEndian.Uint32(ext[:]) != 0xe2792aca {
		t.Fatalf("%s: the first header extension is %x, not the backing format (%v)", path, ext, err)
	}
	if _, err := f.WriteAt(make([]byte, 4), headerLength); err != nil {
		t.Fatal(err)
	}
}

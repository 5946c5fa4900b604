package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestFetchLocalClone copies a local source into a Dest on XFS, a file system with reflinks, as a clone:
// the store's copy uses no new blocks, is verified, and keeps its bytes when the source is then rewritten
// in place. On ext4 (the test's temp folder here) the same fetch copies.
func TestFetchLocalClone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting an XFS file system needs root")
	}
	mkfs, err := exec.LookPath("mkfs.xfs")
	if err != nil {
		t.Skip("mkfs.xfs not installed (scripts/install-deps.sh installs xfsprogs)")
	}
	dir := t.TempDir()
	fsImage := filepath.Join(dir, "xfs.img")
	if err := os.WriteFile(fsImage, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fsImage, 512<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", fsImage).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v\n%s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", "-t", "xfs", fsImage, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v\n%s", err, out)
		}
	})

	content := make([]byte, 64<<20)
	if _, err := rand.Read(content); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(mnt, "source.qcow2")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(mnt, "store", "object", "disk")
	before := usedBytes(t, mnt)
	res, err := (&Fetcher{}).Fetch(context.Background(), Request{URL: src, Checksum: "sha256:" + sha256Hex(content), Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != dest || res.Size != int64(len(content)) || res.Checksum.Value != sha256Hex(content) {
		t.Errorf("Fetch = %+v, want %s, %d bytes, sha256 %s", res, dest, len(content), sha256Hex(content))
	}
	if grew := usedBytes(t, mnt) - before; grew > 4<<20 {
		t.Errorf("the file system's use grew by %d bytes for a 64 MiB source; want a clone that shares its blocks", grew)
	}

	// A tool that rewrites the source in place changes the source only.
	f, err := os.OpenFile(src, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xAA}, 1<<20), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Error("the stored clone changed with its source")
	}

	// A clone whose bytes do not match the checksum is not left behind, as with a copy.
	bad := filepath.Join(mnt, "store", "other", "disk")
	_, err = (&Fetcher{}).Fetch(context.Background(), Request{URL: src, Checksum: "sha256:" + sha256Hex(content), Dest: bad})
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Fetch of the rewritten source = %v, want a checksum mismatch", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(bad)); len(entries) != 0 {
		t.Errorf("a failed clone left %v", entries)
	}

	// On a file system without reflinks the fetch copies.
	ext := filepath.Join(dir, "ext4-dest", "disk")
	if res, err := (&Fetcher{}).Fetch(context.Background(), Request{URL: src, Dest: ext}); err != nil || res.Size != int64(len(content)) {
		t.Fatalf("Fetch across file systems = %+v, %v; want a copy", res, err)
	}
}

// usedBytes is the space used on the file system mounted at dir.
func usedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

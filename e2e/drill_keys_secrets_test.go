//go:build drills

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Drill 4: a sensitive variable and the build key. The sensitive value (a random marker) is used in the
// user-data (a write_files entry) and in a provisioner (environment, and printed by it). It must appear in
// no output of any command, in no file of the cache other than the disk layers and the seed that carries
// the user-data, and in the image only in the file the user wrote it to. The build key's public half must
// not be anywhere in the exported image's bytes.
func TestDrill4Secrets(t *testing.T) {
	requireRoot(t)
	rnd := make([]byte, 16)
	if _, err := rand.Read(rnd); err != nil {
		t.Fatal(err)
	}
	marker := "drillsecret" + hex.EncodeToString(rnd)
	d := newDrill(t, drillConfigOptions{Secret: marker})
	t.Logf("marker %s", marker)

	var outputs []result
	keep := func(r result) result { outputs = append(outputs, r); return r }
	for _, args := range [][]string{{"validate"}, {"plan"}, {"plan", "-json"}} {
		if r := keep(d.run(5*time.Minute, args...)); r.code != 0 {
			t.Fatalf("%s\n%s", r, r.stderr)
		}
	}
	// Every input of every key, as IMGFORM_DEBUG_KEYS shows them.
	if r := keep(d.runEnv(5*time.Minute, []string{"IMGFORM_DEBUG_KEYS=1"}, "plan")); r.code != 0 {
		t.Fatalf("%s\n%s", r, r.stderr)
	}

	// The build, with human output: the provisioner prints the secret.
	r := keep(d.run(40*time.Minute, "apply"))
	if r.code != 0 {
		t.Fatalf("%s\n%s", r, r.stderr)
	}
	if !strings.Contains(r.stdout, "the secret is (sensitive value)") {
		t.Errorf("the provisioner's line with the secret is not shown redacted:\n%s", lastLines(r.stdout, 40))
	}
	out := filepath.Join(d.outDir(), drillOutput)
	checkOutputs(t, d.outDir())

	// The same provisioner again with -json, failing after it printed the secret, so the secret also
	// passes through step_output events and the error's last lines. A new version re-runs it.
	cfgFile := filepath.Join(d.dir, "debian-12-base.imgform.hcl")
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	failing := strings.Replace(string(b), `"echo \"the secret is $DRILL_SECRET\""]`, `"echo \"the secret is $DRILL_SECRET\"", "echo \"$DRILL_SECRET\" >&2", "exit 3"]`, 1)
	if failing == string(b) {
		t.Fatal("the drill provisioner changed; update this drill")
	}
	if err := os.WriteFile(cfgFile, []byte(failing), 0o644); err != nil {
		t.Fatal(err)
	}
	r = keep(d.run(40*time.Minute, "apply", "-json", "-var", "version=2026.12"))
	if r.code == 0 {
		t.Errorf("the failing provisioner did not fail the apply")
	}
	var sawLine, sawErr bool
	for _, e := range parseEvents(r.stdout) {
		sawLine = sawLine || (e.Type == "step_output" && e.Line == "the secret is (sensitive value)")
		sawErr = sawErr || (e.Type == "step_finished" && e.Status == "failed" && strings.Contains(e.Error, "exited with status 3") && strings.Contains(e.Error, "(sensitive value)"))
	}
	if !sawLine || !sawErr {
		t.Errorf("apply -json: redacted step_output seen %v, failed step_finished with the redacted tail seen %v", sawLine, sawErr)
	}
	noQEMU(t, d.cache, 10*time.Second)
	// What the session finished before the failing provisioner stays cached (the e2e test of the example
	// checked this on a provisioner of its own before issue 10; this failure is the cheaper place).
	r = keep(d.run(5*time.Minute, "plan", "-json", "-var", "version=2026.12"))
	var p jsonPlan
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("plan -json: %v\n%s", err, r.stdout)
	}
	if got := p.actions(); !strings.HasPrefix(got, "fetch=cached seed=cached boot=cached provision/motd=run") {
		t.Errorf("after the failing provisioner the plan is %s: the layers before it were not kept", got)
	}
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	keep(d.run(5*time.Minute, "plan", "-json"))
	keep(d.run(5*time.Minute, "cache", "ls"))
	keep(d.verify(false))
	noQEMU(t, d.cache, 10*time.Second)

	t.Run("command output", func(t *testing.T) {
		for _, r := range outputs {
			for name, s := range map[string]string{"stdout": r.stdout, "stderr": r.stderr} {
				if i := strings.Index(s, marker); i >= 0 {
					t.Errorf("the marker is in the %s of imgform %s: ...%s...", name, strings.Join(r.args, " "), around(s, i, len(marker)))
				}
			}
		}
	})

	t.Run("cache files", func(t *testing.T) {
		scanned := 0
		err := filepath.WalkDir(d.cache, func(path string, e fs.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			name := e.Name()
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			i := bytes.Index(b, []byte(marker))
			switch {
			case name == "disk.qcow2" || (name == "disk" && filepath.Base(filepath.Dir(path)) == "data"):
				return nil // disk layers and the source hold the guest's file systems
			case name == "vmstate.zst" && i >= 0:
				// A VM state is the guest's memory: it may hold what its own layer's disk holds (the file the
				// user-data writes is in the boot layer, and in the boot's memory), never more. A step that
				// handled the value itself (the provisioner's environment) saves no state (steps/vm).
				layer, err := os.ReadFile(filepath.Join(filepath.Dir(path), "disk.qcow2"))
				if err != nil || !bytes.Contains(layer, []byte(marker)) {
					t.Errorf("the marker is in the VM state %s, and not in its layer's disk: ...%s...", path, around(string(b), i, len(marker)))
				} else {
					t.Logf("the marker is in the VM state %s, as on its layer's disk", path)
				}
				return nil
			case name == "seed.iso":
				// The seed carries the user-data to cloud-init, so the value is in it by design.
				st, _ := e.Info()
				t.Logf("seed %s: marker present %v, mode %v", path, i >= 0, st.Mode().Perm())
				if st.Mode().Perm()&0o077 != 0 {
					t.Errorf("the seed holding the user-data is readable by others: %v", st.Mode().Perm())
				}
				return nil
			}
			scanned++
			if i >= 0 {
				t.Errorf("the marker is in the cache file %s: ...%s...", path, around(string(b), i, len(marker)))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("scanned %d cache files", scanned)
		for _, dir := range []string{d.outDir(), d.dir} {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if e.IsDir() || e.Name() == drillOutput || e.Name() == "drill.auto.imgvars.hcl" {
					continue
				}
				b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
				if bytes.Contains(b, []byte(marker)) {
					t.Errorf("the marker is in %s", filepath.Join(dir, e.Name()))
				}
			}
		}
		// Other users of the machine can read the disk layers, which hold the file with the secret.
		if st, err := os.Stat(d.cache); err == nil && st.Mode().Perm()&0o005 != 0 {
			t.Logf("NOTE: the cache folder has mode %v: its disk layers (mode 0444), which hold whatever secrets the build wrote into the guest, are readable by every local user", st.Mode().Perm())
		}
	})

	t.Run("image", func(t *testing.T) {
		objs := d.objects()
		seed := objs[drillImageName+"/seed"]
		pub, err := os.ReadFile(seed.path("build_key.pub"))
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(pub))
		if len(fields) < 2 {
			t.Fatalf("build_key.pub: %q", pub)
		}
		pubBody := fields[1]
		priv, err := os.ReadFile(seed.path("build_key"))
		if err != nil {
			t.Fatal(err)
		}
		privLines := strings.Split(strings.TrimSpace(string(priv)), "\n")
		privChunk := privLines[len(privLines)/2] // a line from the middle of the private key's base64
		t.Logf("build key %s...", pubBody[:24])

		work := t.TempDir()
		qcow := filepath.Join(work, "image.qcow2")
		raw := filepath.Join(work, "image.raw")
		runCmd(t, "zstd", "-q", "-d", out, "-o", qcow)
		runCmd(t, "qemu-img", "convert", "-O", "raw", qcow, raw)
		_ = os.Remove(qcow)

		hits := scanRaw(t, raw, map[string][]byte{"build key (public)": []byte(pubBody), "build key (private)": []byte(privChunk), "marker": []byte(marker)})
		parts := partitions(t, raw)
		for what, offs := range hits {
			for _, off := range offs {
				where := attribute(t, raw, parts, off)
				if what == "marker" && strings.Contains(where, "the file /etc/drill-secret ") {
					t.Logf("the marker is in the raw image at byte %d: %s (expected: the user-data writes it there)", off, where)
					continue
				}
				// Deleted files (cloud-init's copies of the user-data, the journal with sudo's command lines)
				// stay readable in free space that fstrim could not discard.
				t.Errorf("the %s is in the raw image at byte %d: %s; around it: %s",
					what, off, where, rawContext(raw, off))
			}
		}
		if len(hits["marker"]) == 0 {
			t.Errorf("the marker is nowhere in the image, not even in /etc/drill-secret: did the build use it?")
		}

		// Mount every partition read-only (a read-only loop device over the partition's bytes: losetup -P
		// needs udev to make the partition nodes) and look at the files.
		mounted := 0
		for i, p := range parts {
			loop, err := exec.Command("losetup", "-r", "-f", "--show", "-o", strconv.FormatInt(p.Start*512, 10),
				"--sizelimit", strconv.FormatInt(p.Size*512, 10), raw).Output()
			if err != nil {
				t.Fatalf("losetup: %v", err)
			}
			dev := strings.TrimSpace(string(loop))
			t.Cleanup(func() { _ = exec.Command("losetup", "-d", dev).Run() })
			mnt := filepath.Join(work, fmt.Sprintf("mnt-%d", i+1))
			if err := os.MkdirAll(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("mount", "-o", "ro,noload", dev, mnt).CombinedOutput(); err != nil {
				if out2, err2 := exec.Command("mount", "-o", "ro", dev, mnt).CombinedOutput(); err2 != nil {
					t.Logf("partition %d (%s): not mounted: %s %s", i+1, p.Node, strings.TrimSpace(string(out)), strings.TrimSpace(string(out2)))
					continue
				}
			}
			mounted++
			t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
			found := grepTree(t, mnt, map[string]string{"marker": marker, "build key (public)": pubBody, "build key (private)": privChunk})
			for _, f := range found {
				rel := strings.TrimPrefix(f.path, mnt)
				if f.what == "marker" && rel == "/etc/drill-secret" {
					t.Logf("the marker is in %s, where the user-data wrote it (expected)", rel)
					continue
				}
				t.Errorf("the %s is in the image's file %s", f.what, rel)
			}
			// journald compresses long fields (sudo's command lines): read the journal through journalctl.
			if st, err := os.Stat(filepath.Join(mnt, "var/log/journal")); err == nil && st.IsDir() {
				out, err := exec.Command("journalctl", "-D", filepath.Join(mnt, "var/log/journal"), "--no-pager", "-o", "export").Output()
				if err != nil {
					t.Logf("journalctl -D: %v", err)
				}
				entries := strings.Count(string(out), "\n\n")
				for _, needle := range []struct{ what, s string }{{"marker", marker}, {"build key (public)", pubBody}} {
					if i := strings.Index(string(out), needle.s); i >= 0 {
						t.Errorf("the %s is in the image's journal (/var/log/journal, %d entries): ...%s...",
							needle.what, entries, around(string(out), i, len(needle.s)))
					}
				}
				t.Logf("partition %d: the journal holds %d entries", i+1, entries)
			}
			var searched []string
			for _, dir := range []string{"var/log", "var/lib/cloud", "etc/ssh", "home", "root"} {
				if _, err := os.Stat(filepath.Join(mnt, dir)); err == nil {
					searched = append(searched, "/"+dir)
				}
			}
			t.Logf("partition %d: every file searched, among them %v", i+1, searched)
		}
		if mounted == 0 {
			t.Errorf("no partition of the image could be mounted")
		}
	})
}

// around returns the text around s[i:i+n], for messages.
func around(s string, i, n int) string {
	lo, hi := max(i-60, 0), min(i+n+60, len(s))
	return strconv.Quote(s[lo:hi])
}

// scanRaw returns the offsets in the sparse file path of each needle, reading only its data extents.
func scanRaw(t *testing.T, path string, needles map[string][]byte) map[string][]int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const seekData, seekHole = 3, 4
	const chunk = 8 << 20
	overlap := 0
	for _, n := range needles {
		overlap = max(overlap, len(n))
	}
	hits := map[string][]int64{}
	buf := make([]byte, chunk+overlap)
	for off := int64(0); off < st.Size(); {
		data, err := f.Seek(off, seekData)
		if err != nil {
			break // no data after off
		}
		hole, err := f.Seek(data, seekHole)
		if err != nil {
			hole = st.Size()
		}
		for pos := data; pos < hole; pos += chunk {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), st.Size()-pos)], pos)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			for what, needle := range needles {
				for i := 0; ; {
					j := bytes.Index(buf[i:n], needle)
					if j < 0 || int64(i+j) >= chunk || pos+int64(i+j) >= hole {
						break
					}
					hits[what] = append(hits[what], pos+int64(i+j))
					i += j + 1
				}
			}
		}
		off = hole
	}
	return hits
}

// rawContext returns the printable text around off in the file at path, for messages.
func rawContext(path string, off int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	start := max(off-120, 0)
	b := make([]byte, 240)
	n, _ := f.ReadAt(b, start)
	return strconv.Quote(string(bytes.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '.'
		}
		return r
	}, b[:n])))
}

// partition is a partition of a raw image, by sfdisk.
type partition struct {
	Node  string `json:"node"`
	Start int64  `json:"start"` // sectors
	Size  int64  `json:"size"`
}

func partitions(t *testing.T, raw string) []partition {
	t.Helper()
	out, err := exec.Command("sfdisk", "-J", raw).Output()
	if err != nil {
		t.Logf("sfdisk: %v", err)
		return nil
	}
	var pt struct {
		PartitionTable struct {
			Partitions []partition `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &pt); err != nil {
		t.Logf("sfdisk: %v", err)
	}
	return pt.PartitionTable.Partitions
}

// attribute says where a byte of the raw image is: which partition, and for ext4 which file or free
// space, by debugfs on a copy-free read-only loop device.
func attribute(t *testing.T, raw string, parts []partition, off int64) string {
	for i, p := range parts {
		start, end := p.Start*512, (p.Start+p.Size)*512
		if off < start || off >= end {
			continue
		}
		rel := off - start
		where := fmt.Sprintf("partition %d, byte %d", i+1, rel)
		loop, err := exec.Command("losetup", "-r", "-f", "--show", "-o", strconv.FormatInt(start, 10),
			"--sizelimit", strconv.FormatInt(end-start, 10), raw).Output()
		if err != nil {
			return where
		}
		dev := strings.TrimSpace(string(loop))
		defer exec.Command("losetup", "-d", dev).Run()
		bs := int64(4096)
		if out, err := exec.Command("dumpe2fs", "-h", dev).Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if v, ok := strings.CutPrefix(line, "Block size:"); ok {
					bs, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
			}
		} else {
			return where + " (not ext4)"
		}
		block := rel / bs
		// "Block\tInode number\n<block>\t<inode or <block not found>>"
		out, _ := exec.Command("debugfs", "-R", fmt.Sprintf("icheck %d", block), dev).Output()
		fields := strings.Fields(lastLine(string(out)))
		if len(fields) < 2 || fields[1] == "<block" {
			return fmt.Sprintf("%s, block %d: free space (the remains of a deleted file)", where, block)
		}
		ino := fields[1]
		// "Inode\tPathname\n<inode>\t<path>"
		out, _ = exec.Command("debugfs", "-R", "ncheck "+ino, dev).Output()
		path := strings.Fields(lastLine(string(out)))
		if len(path) < 2 || path[0] != ino {
			return fmt.Sprintf("%s, block %d: inode %s", where, block, ino)
		}
		return fmt.Sprintf("%s, block %d: the file %s (inode %s)", where, block, path[1], ino)
	}
	return "outside every partition"
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

type found struct{ what, path string }

// grepTree finds the files under root holding any of the needles.
func grepTree(t *testing.T, root string, needles map[string]string) []found {
	t.Helper()
	var out []found
	_ = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.IsDir() && (path == filepath.Join(root, "proc") || path == filepath.Join(root, "sys")) {
			return filepath.SkipDir
		}
		if !e.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for what, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				out = append(out, found{what, path})
			}
		}
		return nil
	})
	return out
}

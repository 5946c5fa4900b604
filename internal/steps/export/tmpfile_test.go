package export

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// TestExportWritesUnnamedFiles looks into the output folder in every phase of an export: while it runs
// there is no file in it at all (the output and the intermediate are unnamed), so a process killed at
// any point leaves nothing there.
func TestExportWritesUnnamedFiles(t *testing.T) {
	chain := makeChain(t, t.TempDir())
	for _, compression := range []string{CompressionNone, CompressionZstd, CompressionQcow2Zstd} {
		t.Run(compression, func(t *testing.T) {
			dir := t.TempDir()
			dest := filepath.Join(dir, "disk.qcow2")
			seen := map[string][]string{}
			res, err := Export(context.Background(), Request{Source: chain.top, Compression: compression, Dest: dest,
				Progress: func(phase string, done, total int64) {
					if phase != PhaseCommit {
						seen[phase] = listDir(t, dir)
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			for phase, names := range seen {
				if len(names) != 0 {
					t.Errorf("during %s the output folder holds %v", phase, names)
				}
			}
			if got := listDir(t, dir); !slices.Equal(got, []string{"disk.qcow2"}) {
				t.Errorf("after the export: %v", got)
			}
			if fileSHA256(t, dest) != res.SHA256 {
				t.Error("the published file is not the one hashed")
			}
			if st, err := os.Stat(dest); err != nil || st.Mode().Perm() != OutputPerm {
				t.Errorf("mode %v, %v", st.Mode(), err)
			}
		})
	}
}

// TestExportNamedFallback exports with named temp files, as on file systems without O_TMPFILE: they are
// hidden while the export runs and gone afterwards.
func TestExportNamedFallback(t *testing.T) {
	useTmpfile = false
	t.Cleanup(func() { useTmpfile = true })
	chain := makeChain(t, t.TempDir())
	for _, compression := range []string{CompressionNone, CompressionZstd} {
		t.Run(compression, func(t *testing.T) {
			dir := t.TempDir()
			dest := filepath.Join(dir, "disk.qcow2")
			var during []string
			_, err := Export(context.Background(), Request{Source: chain.top, Compression: compression, Dest: dest,
				Progress: func(phase string, done, total int64) {
					if phase == PhaseFlatten && done > 0 {
						during = listDir(t, dir)
					}
				}})
			if err != nil {
				t.Fatal(err)
			}
			if len(during) == 0 {
				t.Errorf("no named temp file seen during the export")
			}
			for _, n := range during {
				if !strings.HasPrefix(n, ".") {
					t.Errorf("a temp file is not hidden: %s", n)
				}
			}
			if got := listDir(t, dir); !slices.Equal(got, []string{"disk.qcow2"}) {
				t.Errorf("after the export: %v", got)
			}
		})
	}
}

// TestWriteSumsRemovesDeadTemps: WriteSumEntries removes the temp files of a SHA256SUMS writer that died
// (every live writer holds the folder's lock while its temp file exists).
func TestWriteSumsRemovesDeadTemps(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{".SHA256SUMS.tmp-789", ".SHA256SUMS.tmp-012"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("0123  partial\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteSumEntries(dir, []SumEntry{{Name: "disk.raw", SHA256: sha256Hex([]byte("x"))}}); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{SumsFile}) {
		t.Errorf("left %v", got)
	}
}

// TestUnnamedOutputIsLocked: once Commit gives the unnamed output a name, until the rename, the name is
// flocked, so that fsutil.RemoveStaleTemps of another export of the same path does not take it for a
// killed writer's leftover.
func TestUnnamedOutputIsLocked(t *testing.T) {
	dir := t.TempDir()
	w, err := createOutput(filepath.Join(dir, "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if w.atomic != nil {
		t.Skip("no O_TMPFILE here")
	}
	name := filepath.Join(dir, ".disk.raw.tmp-test")
	if err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", w.f.Fd()), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW); err != nil {
		t.Fatal(err)
	}
	removed, err := fsutil.RemoveStaleTemps(filepath.Join(dir, "disk.raw"))
	if err != nil || len(removed) != 0 {
		t.Errorf("RemoveStaleTemps removed %v (%v) while the export holds it", removed, err)
	}
}

// TestExportKilled kills a process in the middle of an export with SIGKILL, where no cleanup code runs,
// and checks that nothing is left in the output folder and that qemu-img died with it.
func TestExportKilled(t *testing.T) {
	if os.Getenv("EXPORT_KILL_HELPER") != "" {
		return
	}
	src := makeSource(t, t.TempDir(), 512*MiB, 192*MiB)
	for _, phase := range []string{PhaseFlatten, PhaseCompress} {
		t.Run(phase, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestExportKilledHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), "EXPORT_KILL_HELPER="+src+"|"+filepath.Join(dir, "disk.raw.zst")+"|"+phase)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			ready := false
			for sc.Scan() {
				if sc.Text() == "in "+phase {
					ready = true
					break
				}
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()
			if !ready {
				t.Fatalf("the helper never reached %s", phase)
			}
			if got := listDir(t, dir); len(got) != 0 {
				t.Errorf("left in the output folder after SIGKILL: %v", got)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(liveProcesses(t, src)) > 0 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if p := liveProcesses(t, src); len(p) != 0 {
				t.Errorf("qemu-img outlived the killed export: %v", p)
			}
		})
	}
}

// TestExportKilledHelper is the process TestExportKilled kills: it exports and says which phase it is in.
func TestExportKilledHelper(t *testing.T) {
	arg := os.Getenv("EXPORT_KILL_HELPER")
	if arg == "" {
		t.Skip("run by TestExportKilled")
	}
	parts := strings.Split(arg, "|")
	said := false
	_, err := Export(context.Background(), Request{Source: parts[0], Format: FormatRaw, Compression: CompressionZstd, Dest: parts[1], Level: 19,
		Progress: func(phase string, done, total int64) {
			if phase == parts[2] && done > 0 && !said {
				said = true
				fmt.Println("in " + phase)
				time.Sleep(time.Minute) // killed meanwhile; qemu-img goes on flattening
			}
		}})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

package export

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestExport exports the same two-layer chain in every format and compression and checks that the
// disk inside is the chain's, that Result describes the file on disk, and that nothing else is left.
func TestExport(t *testing.T) {
	chain := makeChain(t, t.TempDir())
	cases := map[string]struct {
		format, compression string
		ext                 string
	}{
		"qcow2/none":       {FormatQcow2, CompressionNone, ".qcow2"},
		"raw/none":         {FormatRaw, CompressionNone, ".raw"},
		"qcow2/zstd":       {FormatQcow2, CompressionZstd, ".qcow2.zst"},
		"raw/zstd":         {FormatRaw, CompressionZstd, ".raw.zst"},
		"qcow2/qcow2-zstd": {FormatQcow2, CompressionQcow2Zstd, ".qcow2"},
		"vmdk/none":        {FormatVMDK, CompressionNone, ".vmdk"},
		"vhdx/none":        {FormatVHDX, CompressionNone, ".vhdx"},
		"vmdk/zstd":        {FormatVMDK, CompressionZstd, ".vmdk.zst"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dest := filepath.Join(dir, "disk"+tc.ext)
			var phases []string
			var logs []string
			res, err := Export(context.Background(), Request{
				Source: chain.top, Format: tc.format, Compression: tc.compression, Dest: dest,
				Progress: func(phase string, done, total int64) {
					if done > total || done < 0 {
						t.Errorf("progress %s: %d of %d", phase, done, total)
					}
					if len(phases) == 0 || phases[len(phases)-1] != phase {
						phases = append(phases, phase)
					}
				},
				Log: func(s string) { logs = append(logs, s) },
			})
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, res, dest, tc.format, tc.compression)
			if got := listDir(t, dir); !slices.Equal(got, []string{filepath.Base(dest)}) {
				t.Errorf("files in the output folder: %v, want only %s", got, filepath.Base(dest))
			}
			wantPhases := []string{PhaseFlatten, PhaseChecksum}
			if tc.compression == CompressionZstd {
				wantPhases = []string{PhaseFlatten, PhaseCompress}
			}
			if !slices.Equal(phases, wantPhases) {
				t.Errorf("progress phases %v, want %v", phases, wantPhases)
			}
			if len(logs) == 0 {
				t.Error("nothing logged")
			}

			img := disk(t, res)
			requireIdentical(t, chain.top, "qcow2", img, tc.format)
			if tc.format == FormatQcow2 {
				info := imageInfo(t, img)
				if b, ok := info["backing-filename"]; ok {
					t.Errorf("output still has a backing file %v", b)
				}
				fs, _ := info["format-specific"].(map[string]any)
				data, _ := fs["data"].(map[string]any)
				wantType := "zlib" // qemu-img's default, unused as no cluster is compressed
				if tc.compression == CompressionQcow2Zstd {
					wantType = "zstd"
				}
				if data["compat"] != "1.1" || data["compression-type"] != wantType {
					t.Errorf("qcow2 header: %v, want compat 1.1 and compression type %s", data, wantType)
				}
			}
			if tc.format == FormatRaw {
				checkRawContent(t, img)
			}
			// VMware and Hyper-V read what qemu-img says the file is: a streamOptimized VMDK, a VHDX.
			if tc.format == FormatVMDK || tc.format == FormatVHDX {
				info := imageInfo(t, img)
				fs, _ := info["format-specific"].(map[string]any)
				data, _ := fs["data"].(map[string]any)
				if info["format"] != tc.format || (tc.format == FormatVMDK && data["create-type"] != "streamOptimized") {
					t.Errorf("%s: qemu-img info says %v, %v", img, info["format"], data)
				}
			}
		})
	}
}

// checkResult compares Result with the file on disk.
func checkResult(t *testing.T, res Result, dest, format, compression string) {
	t.Helper()
	st, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != dest || res.Format != format || res.Compression != compression {
		t.Errorf("result %+v does not describe %s, %s, %s", res, dest, format, compression)
	}
	if res.Size != st.Size() {
		t.Errorf("Result.Size %d, file has %d bytes", res.Size, st.Size())
	}
	if st.Mode().Perm() != OutputPerm {
		t.Errorf("mode %v, want %v", st.Mode().Perm(), OutputPerm)
	}
	if sum := fileSHA256(t, dest); res.SHA256 != sum {
		t.Errorf("Result.SHA256 %s, file hashes to %s", res.SHA256, sum)
	}
	if res.VirtualSize != chainSize {
		t.Errorf("Result.VirtualSize %d, want %d", res.VirtualSize, chainSize)
	}
	if len(res.Phases) == 0 || res.Duration <= 0 {
		t.Errorf("no timings: %+v %v", res.Phases, res.Duration)
	}
}

// disk returns the path of the disk image inside an export: the file itself, or for zstd the file
// decompressed by Decompress, after checking that the zstd tool decompresses it to the same bytes.
func disk(t *testing.T, res Result) string {
	t.Helper()
	if res.Compression != CompressionZstd {
		return res.Path
	}
	dir := t.TempDir()
	ours := filepath.Join(dir, "ours."+res.Format)
	if err := Decompress(context.Background(), res.Path, ours); err != nil {
		t.Fatal(err)
	}
	if haveTool("zstd") {
		cli := filepath.Join(dir, "cli."+res.Format)
		run(t, "zstd", "-d", "-q", "-o", cli, res.Path)
		if a, b := fileSHA256(t, ours), fileSHA256(t, cli); a != b {
			t.Errorf("Decompress gives %s, zstd -d gives %s", a, b)
		}
	} else {
		t.Log("zstd is not installed: interoperability with the zstd tool not checked")
	}
	return ours
}

// checkRawContent reads a few places of a raw export of makeChain's chain.
func checkRawContent(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}()
	for _, c := range []struct {
		what string
		off  int64
		want byte
	}{
		{"base pattern", 8 * MiB, 0xab},
		{"top pattern over base", 8*MiB + 32*KiB, 0xcd},
		{"base pattern before the top write", 8*MiB + 32*KiB - 1, 0xab},
		{"top write past the base data", 8*MiB + 96*KiB - 1, 0xcd},
		{"after the top write", 8*MiB + 96*KiB, 0},
		{"top zeroes over base data", 16*MiB + 100, 0},
		{"top data", 40*MiB + 512*KiB, 0x11},
		{"base end of disk", chainSize - 1, 0x5a},
		{"hole", 30 * MiB, 0},
	} {
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, c.off); err != nil {
			t.Fatal(err)
		}
		if b[0] != c.want {
			t.Errorf("%s at %d: %#x, want %#x", c.what, c.off, b[0], c.want)
		}
	}
	if a := allocated(t, path); a > 4*MiB {
		t.Errorf("raw export occupies %d bytes for about 2 MiB of data: not sparse", a)
	}
}

// TestExportLevel checks that the zstd level reaches the encoder: on compressible data the best level
// gives a smaller file than the fastest.
func TestExportLevel(t *testing.T) {
	chain := makeChain(t, t.TempDir())
	dir := t.TempDir()
	sizes := map[int]int64{}
	for _, level := range []int{1, 19} {
		res, err := Export(context.Background(), Request{Source: chain.top, Format: FormatRaw, Compression: CompressionZstd,
			Level: level, Dest: filepath.Join(dir, "disk.raw.zst")})
		if err != nil {
			t.Fatal(err)
		}
		if res.Level != level {
			t.Errorf("Result.Level %d, want %d", res.Level, level)
		}
		sizes[level] = res.Size
	}
	if sizes[19] >= sizes[1] {
		t.Errorf("level 19 gives %d bytes, level 1 gives %d: the level is not honoured", sizes[19], sizes[1])
	}
	t.Logf("sizes by level: %v", sizes)

	res, err := Export(context.Background(), Request{Source: chain.top, Format: FormatRaw, Compression: CompressionZstd,
		Dest: filepath.Join(dir, "default.raw.zst")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Level != DefaultLevel {
		t.Errorf("level 0 became %d, want %d", res.Level, DefaultLevel)
	}
}

// TestExportReproducible checks that the same source gives the same bytes, so that SHA256SUMS and the
// manifest do not change when nothing changed. qcow2 output depends on qemu-img writing in order (no -W).
func TestExportReproducible(t *testing.T) {
	chain := makeChain(t, t.TempDir())
	for _, compression := range []string{CompressionNone, CompressionZstd, CompressionQcow2Zstd} {
		t.Run(compression, func(t *testing.T) {
			t.Parallel()
			var sums []string
			for i := range 2 {
				res, err := Export(context.Background(), Request{Source: chain.top, Format: FormatQcow2,
					Compression: compression, Dest: filepath.Join(t.TempDir(), "disk"+string(rune('a'+i)))})
				if err != nil {
					t.Fatal(err)
				}
				sums = append(sums, res.SHA256)
			}
			if sums[0] != sums[1] {
				t.Errorf("two exports of the same source differ: %v", sums)
			}
		})
	}
}

// TestExportReplacesDest checks that an existing output is replaced by a successful export.
func TestExportReplacesDest(t *testing.T) {
	chain := makeChain(t, t.TempDir())
	dest := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Export(context.Background(), Request{Source: chain.top, Format: FormatRaw, Dest: dest})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, res, dest, FormatRaw, CompressionNone)
}

// TestExportErrors checks that bad requests and bad sources fail with a message that says what is
// wrong, before anything is written.
func TestExportErrors(t *testing.T) {
	chain := makeChain(t, t.TempDir())
	srcDir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(srcDir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	text := write("notes.txt", []byte("hello, this is not a disk\n"))
	empty := write("empty.img", nil)
	zst := write("disk.raw.zst", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, make([]byte, 1020)...))
	orphan := filepath.Join(srcDir, "orphan.qcow2")
	run(t, "qemu-img", "create", "-q", "-u", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(srcDir, "gone.qcow2"), "-o", "size=1M", orphan)

	cases := map[string]struct {
		req  func(outDir string) Request
		want []string
	}{
		"destination folder missing": {
			req: func(out string) Request {
				return Request{Source: chain.top, Dest: filepath.Join(out, "no", "disk.qcow2")}
			},
			want: []string{"destination folder", "does not exist"},
		},
		"temp folder missing": {
			req: func(out string) Request {
				return Request{Source: chain.top, Compression: CompressionZstd, Dest: filepath.Join(out, "d.zst"), TempDir: filepath.Join(out, "no")}
			},
			want: []string{"temp folder", "does not exist"},
		},
		"source missing": {
			req: func(out string) Request {
				return Request{Source: filepath.Join(srcDir, "nope.qcow2"), Dest: filepath.Join(out, "d")}
			},
			want: []string{"not a readable disk image", "no such file or directory"},
		},
		"source is a folder": {
			req:  func(out string) Request { return Request{Source: srcDir, Dest: filepath.Join(out, "d")} },
			want: []string{"not a readable disk image", "regular file"},
		},
		"source is a text file": {
			req:  func(out string) Request { return Request{Source: text, Dest: filepath.Join(out, "d")} },
			want: []string{"is not a disk image", "not a whole number of 512-byte sectors"},
		},
		"source is empty": {
			req:  func(out string) Request { return Request{Source: empty, Dest: filepath.Join(out, "d")} },
			want: []string{"is not a disk image", "empty"},
		},
		"source is compressed": {
			req:  func(out string) Request { return Request{Source: zst, Dest: filepath.Join(out, "d")} },
			want: []string{"is not a disk image", "zstd-compressed", "decompress it first"},
		},
		"backing file missing": {
			req:  func(out string) Request { return Request{Source: orphan, Dest: filepath.Join(out, "d")} },
			want: []string{"not a readable disk image", "gone.qcow2"},
		},
		"destination is the source": {
			req:  func(string) Request { return Request{Source: chain.top, Dest: chain.top} },
			want: []string{"is the source itself"},
		},
		"destination is a folder": {
			req:  func(out string) Request { return Request{Source: chain.top, Dest: out} },
			want: []string{"is a folder"},
		},
		"unknown format": {
			req: func(out string) Request {
				return Request{Source: chain.top, Format: "vdi", Dest: filepath.Join(out, "d")}
			},
			want: []string{`unknown format "vdi"`},
		},
		"unknown compression": {
			req: func(out string) Request {
				return Request{Source: chain.top, Compression: "xz", Dest: filepath.Join(out, "d")}
			},
			want: []string{`unknown compression "xz"`},
		},
		"level out of range": {
			req: func(out string) Request {
				return Request{Source: chain.top, Compression: CompressionZstd, Level: 23, Dest: filepath.Join(out, "d")}
			},
			want: []string{"zstd level 23 out of range 1-22"},
		},
		"level without zstd": {
			req: func(out string) Request {
				return Request{Source: chain.top, Compression: CompressionQcow2Zstd, Level: 5, Dest: filepath.Join(out, "d")}
			},
			want: []string{"level 5 given", "qemu-img has no level"},
		},
		"qcow2-zstd as raw": {
			req: func(out string) Request {
				return Request{Source: chain.top, Format: FormatRaw, Compression: CompressionQcow2Zstd, Dest: filepath.Join(out, "d")}
			},
			want: []string{`needs format "qcow2"`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			_, err := Export(context.Background(), tc.req(out))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if got := listDir(t, out); len(got) != 0 {
				t.Errorf("files left in the output folder: %v", got)
			}
		})
	}
}

// TestExportCancel cancels the export from its Progress callback in each phase and checks that
// qemu-img is gone and no output, temp or intermediate file is left.
func TestExportCancel(t *testing.T) {
	srcDir := t.TempDir()
	// 128 MiB of data: enough for qemu-img to be still at work when the first progress report cancels.
	src := makeSource(t, srcDir, 256*MiB, 128*MiB)
	cases := map[string]struct {
		compression string
		phase       string
	}{
		"flatten":                 {CompressionNone, PhaseFlatten},
		"flatten to intermediate": {CompressionZstd, PhaseFlatten},
		"compress":                {CompressionZstd, PhaseCompress},
		"checksum":                {CompressionNone, PhaseChecksum},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			// Not parallel: the check for child processes must not see other tests' qemu-img.
			outDir, tmpDir := t.TempDir(), t.TempDir()
			dest := filepath.Join(outDir, "disk.raw")
			if tc.compression == CompressionZstd {
				dest += ".zst"
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var seen []string
			var cancelledAt int64
			_, err := Export(ctx, Request{Source: src, Format: FormatRaw, Compression: tc.compression, Dest: dest, TempDir: tmpDir,
				Progress: func(phase string, done, total int64) {
					if !slices.Contains(seen, phase) {
						seen = append(seen, phase)
					}
					// done > 0: the work of the phase has started, qemu-img is running.
					if phase == tc.phase && done > 0 {
						cancelledAt = done
						cancel()
					}
				}})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v, want context.Canceled", err)
			}
			t.Logf("cancelled at %d: %v", cancelledAt, err)
			if tc.phase == PhaseFlatten && !strings.Contains(err.Error(), "qemu-img stopped") {
				t.Errorf("error %q: qemu-img was not running when the export was cancelled", err)
			}
			if seen[len(seen)-1] != tc.phase {
				t.Errorf("phases reported %v: went on after %s was cancelled", seen, tc.phase)
			}
			for _, dir := range []string{outDir, tmpDir} {
				if got := listDir(t, dir); len(got) != 0 {
					t.Errorf("files left in %s: %v", dir, got)
				}
			}
			if p := liveProcesses(t, ""); len(p) != 0 {
				t.Errorf("child processes left: %v", p)
			}
			if p := liveProcesses(t, outDir); len(p) != 0 {
				t.Errorf("processes still using the output folder: %v", p)
			}
		})
	}
}

// TestExportLockRetry holds the source open for writing with qemu-io, as a QEMU that has not quite
// exited does, and checks that the export waits for the lock instead of copying a live image.
func TestExportLockRetry(t *testing.T) {
	chain := makeChain(t, t.TempDir())
	cases := map[string]struct {
		release   bool // release the lock at the first retry
		wantErr   []string
		wantWaits int
	}{
		"released while waiting": {release: true, wantWaits: 1},
		"never released": {wantWaits: len(lockRetryDelays),
			wantErr: []string{"still locked by another process", "is the VM still running", `Failed to get shared "write" lock`}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			release := holdLock(t, chain.top)
			defer release()
			waits := 0
			orig := waitRetry
			t.Cleanup(func() { waitRetry = orig })
			waitRetry = func(ctx context.Context, _ time.Duration) error {
				waits++
				if tc.release {
					release()
				}
				return ctx.Err()
			}
			var logs []string
			dest := filepath.Join(t.TempDir(), "disk.qcow2")
			res, err := Export(context.Background(), Request{Source: chain.top, Dest: dest, Log: func(s string) { logs = append(logs, s) }})
			if waits != tc.wantWaits {
				t.Errorf("waited %d times, want %d", waits, tc.wantWaits)
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				checkResult(t, res, dest, FormatQcow2, CompressionNone)
				if !slices.ContainsFunc(logs, func(s string) bool { return strings.Contains(s, "locked") }) {
					t.Errorf("the retry was not logged: %q", logs)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output exists after a failure: %v", err)
			}
		})
	}
}

// holdLock opens path for writing in qemu-io, which takes the same locks as a running QEMU, and returns
// once the image is open. release closes it; it may be called more than once.
func holdLock(t *testing.T, path string) (release func()) {
	t.Helper()
	cmd := exec.Command("qemu-io", path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		if err := stdin.Close(); err != nil {
			t.Error(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("qemu-io: %v", err)
		}
	}
	// qemu-io opens the image before it reads commands, so its answer to one proves the lock is held.
	if _, err := stdin.Write([]byte("length\n")); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 256)
	for !bytes.Contains(out, []byte("MiB")) {
		n, err := stdout.Read(buf)
		if err != nil {
			release()
			t.Fatalf("qemu-io did not open %s: %v (%q)", path, err, out)
		}
		out = append(out, buf[:n]...)
	}
	return release
}

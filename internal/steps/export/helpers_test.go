package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

// requireTools skips the test when a program it drives is missing. scripts/install-deps.sh installs
// them (qemu-utils has qemu-img and qemu-io), so CI runs every test.
func requireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("%s is not installed (scripts/install-deps.sh installs it): %v", tool, err)
		}
	}
}

func haveTool(tool string) bool {
	_, err := exec.LookPath(tool)
	return err == nil
}

// run runs a command and fails the test with its output when it fails.
func run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// extent is data written at an offset of a test disk.
type extent struct {
	off  int64
	data []byte
}

// writeRaw creates a sparse raw file of size bytes holding the extents and nothing else.
func writeRaw(tb testing.TB, path string, size int64, extents ...extent) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	for _, e := range extents {
		if _, err := f.WriteAt(e.data, e.off); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// randomBytes returns n bytes that do not compress, the same for the same seed.
func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}).Read(b); err != nil {
		panic(err) // ChaCha8.Read never fails
	}
	return b
}

// textBytes returns n bytes of text-like data that compresses, and compresses better at higher levels.
func textBytes(seed uint64, n int) []byte {
	words := strings.Fields("the quick brown fox jumps over lazy dog kernel module systemd unit cloud init " +
		"network link address route metric package upgrade user group sudo shell bash debian bookworm image " +
		"disk cluster layer backing chain qemu virtio block device partition grub boot loader")
	r := rand.New(rand.NewPCG(seed, 7))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(12) == 0 {
			b.WriteString(".\n")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// testChain is a two-layer qcow2 chain: top.qcow2 over base.qcow2, which the export must flatten.
type testChain struct {
	base, top   string
	virtualSize int64
}

const chainSize = 64 * MiB

// makeChain builds the chain in dir. The base holds text at 1 MiB, a 0xab pattern at 8 MiB, random
// data at 16 MiB and a pattern in the last 4 KiB; the top layer, written with qemu-io, overwrites part
// of the 0xab block, zeroes part of the random block, and adds 1 MiB at 40 MiB. Only a real flatten
// of both layers gives the right content.
func makeChain(tb testing.TB, dir string) testChain {
	tb.Helper()
	requireTools(tb, "qemu-img", "qemu-io")
	raw := filepath.Join(dir, "base.raw")
	writeRaw(tb, raw, chainSize,
		extent{1 * MiB, textBytes(1, 512*KiB)},
		extent{8 * MiB, bytes.Repeat([]byte{0xab}, 64*KiB)},
		extent{16 * MiB, randomBytes(2, 256*KiB)},
		extent{chainSize - 4*KiB, bytes.Repeat([]byte{0x5a}, 4*KiB)},
	)
	c := testChain{base: filepath.Join(dir, "base.qcow2"), top: filepath.Join(dir, "top.qcow2"), virtualSize: chainSize}
	run(tb, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, c.base)
	if err := os.Remove(raw); err != nil {
		tb.Fatal(err)
	}
	run(tb, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", c.base, c.top)
	run(tb, "qemu-io", "-c", "write -P 0xcd 8224k 64k", "-c", "write -z 16M 64k", "-c", "write -P 0x11 40M 1M", c.top)
	return c
}

// makeSource builds a one-layer qcow2 of size bytes holding data bytes of random data at 1 MiB.
func makeSource(tb testing.TB, dir string, size int64, data int) string {
	tb.Helper()
	requireTools(tb, "qemu-img")
	raw := filepath.Join(dir, "src.raw")
	writeRaw(tb, raw, size, extent{1 * MiB, randomBytes(3, data)})
	src := filepath.Join(dir, "src.qcow2")
	run(tb, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, src)
	if err := os.Remove(raw); err != nil {
		tb.Fatal(err)
	}
	return src
}

// requireIdentical fails unless qemu-img compare finds the two images identical as the guest sees them.
func requireIdentical(tb testing.TB, a, aFormat, b, bFormat string) {
	tb.Helper()
	out, err := exec.Command("qemu-img", "compare", "-f", aFormat, "-F", bFormat, a, b).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Images are identical") {
		tb.Fatalf("qemu-img compare %s %s: %v\n%s", a, b, err, out)
	}
}

// imageInfo returns qemu-img info of one file, without following backing files.
func imageInfo(tb testing.TB, path string) map[string]any {
	tb.Helper()
	var info map[string]any
	if err := json.Unmarshal([]byte(run(tb, "qemu-img", "info", "--output=json", path)), &info); err != nil {
		tb.Fatal(err)
	}
	return info
}

func fileSHA256(tb testing.TB, path string) string {
	tb.Helper()
	sum, _, err := fsutil.HashFile(context.Background(), path)
	if err != nil {
		tb.Fatal(err)
	}
	return sum
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// listDir returns the names in dir, to check that no temp file was left.
func listDir(tb testing.TB, dir string) []string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// allocated returns the bytes a file occupies on disk.
func allocated(tb testing.TB, path string) int64 {
	tb.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		tb.Fatal(err)
	}
	return st.Blocks * 512
}

// liveProcesses returns the processes that are not zombies and whose command line contains s, or,
// with s empty, the live children of this process. It reads /proc, so it sees processes that escaped
// their parent too.
func liveProcesses(tb testing.TB, s string) []string {
	tb.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 2 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		line := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if s == "" && fields[1] == strconv.Itoa(os.Getpid()) || s != "" && strings.Contains(line, s) {
			found = append(found, fmt.Sprintf("%d %s", pid, line))
		}
	}
	return found
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// supportsHoles tells whether the file system of dir keeps holes, which the read-count checks need.
func supportsHoles(tb testing.TB, dir string) bool {
	tb.Helper()
	p := filepath.Join(dir, "hole-probe")
	writeRaw(tb, p, 64*MiB, extent{0, []byte{1}})
	defer func() {
		if err := os.Remove(p); err != nil {
			tb.Error(err)
		}
	}()
	f, err := os.Open(p)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			tb.Error(err)
		}
	}()
	_, err = f.Seek(1*MiB, 3) // SEEK_DATA
	return allocated(tb, p) < 1*MiB && errors.Is(err, syscall.ENXIO)
}

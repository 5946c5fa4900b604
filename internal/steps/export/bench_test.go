package export

import (
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

const benchImageSize = 512 * MiB

// makeBenchImage builds a 512 MiB raw disk with realistic-ish content: the programs of /usr/bin laid
// out one after the other with holes of up to 256 KiB between them, as files sit on a half-used file
// system. It is the flattened image both compressors get.
func makeBenchImage(b *testing.B, path string) (data int64) {
	b.Helper()
	var files []string
	err := filepath.WalkDir("/usr/bin", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil || len(files) == 0 {
		b.Skipf("no programs in /usr/bin to build the image from: %v", err)
	}
	slices.Sort(files)
	r := rand.New(rand.NewPCG(1, 2))
	var extents []extent
	off := int64(0)
	for _, f := range files {
		content, err := os.ReadFile(f)
		if err != nil || len(content) == 0 {
			continue
		}
		if off+int64(len(content)) > benchImageSize {
			break
		}
		extents = append(extents, extent{off, content})
		data += int64(len(content))
		off += int64(len(content))
		off = (off + 4*KiB - 1) &^ (4*KiB - 1)
		off += int64(r.IntN(64)) * 4 * KiB
	}
	writeRaw(b, path, benchImageSize, extents...)
	return data
}

// BenchmarkZstdVsCLI compresses the same flattened raw image with this package and with the zstd tool
// (-T0, all cores) at levels 3 and 19, and reports throughput and size ratios (ours/CLI; above 1 means
// ours is faster, or larger). It also reports the qcow2 sizes qemu-img convert -c gives with zlib and
// with zstd clusters. Run it once: go test -run '^$' -bench ZstdVsCLI -benchtime 1x ./steps/export/
func BenchmarkZstdVsCLI(b *testing.B) {
	requireTools(b, "qemu-img")
	dir := b.TempDir()
	img := filepath.Join(dir, "disk.raw")
	data := makeBenchImage(b, img)
	b.Logf("image: %d MiB virtual, %d MiB of data from /usr/bin", benchImageSize>>20, data>>20)
	cli := haveTool("zstd")
	if !cli {
		b.Log("zstd is not installed: the comparison with the zstd tool is skipped (scripts/install-deps.sh installs it)")
	}

	for _, level := range []int{3, 19} {
		b.Run("level="+strconv.Itoa(level), func(b *testing.B) {
			ours := filepath.Join(dir, "ours.zst")
			theirs := filepath.Join(dir, "cli.zst")
			var oursTime, cliTime time.Duration
			for b.Loop() {
				start := time.Now()
				f, err := os.Create(ours)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := compressFile(context.Background(), &env{}, img, f, level); err != nil {
					b.Fatal(err)
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
				oursTime += time.Since(start)
				if cli {
					start = time.Now()
					run(b, "zstd", "-q", "-f", "-T0", "-"+strconv.Itoa(level), "-o", theirs, img)
					cliTime += time.Since(start)
				}
			}
			n := float64(b.N)
			oursSize := fileSize(b, ours)
			oursMBps := float64(benchImageSize) / 1e6 / (oursTime.Seconds() / n)
			b.ReportMetric(oursMBps, "ours-MB/s")
			b.ReportMetric(float64(oursSize)/1e6, "ours-MB")
			if cli {
				cliSize := fileSize(b, theirs)
				cliMBps := float64(benchImageSize) / 1e6 / (cliTime.Seconds() / n)
				b.ReportMetric(cliMBps, "cli-MB/s")
				b.ReportMetric(float64(cliSize)/1e6, "cli-MB")
				b.ReportMetric(oursMBps/cliMBps, "speed-ours/cli")
				b.ReportMetric(float64(oursSize)/float64(cliSize), "size-ours/cli")
			}
		})
	}

	for _, ct := range []string{"zlib", "zstd"} {
		b.Run("qemu-img-c-"+ct, func(b *testing.B) {
			out := filepath.Join(dir, "c-"+ct+".qcow2")
			var took time.Duration
			for b.Loop() {
				if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
					b.Fatal(err)
				}
				start := time.Now()
				cmd := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", "-o", "compat=1.1,compression_type="+ct, img, out)
				if o, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, o)
				}
				took += time.Since(start)
			}
			b.ReportMetric(float64(fileSize(b, out))/1e6, "MB")
			b.ReportMetric(float64(benchImageSize)/1e6/(took.Seconds()/float64(b.N)), "MB/s")
		})
	}
}

func fileSize(tb testing.TB, path string) int64 {
	tb.Helper()
	st, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return st.Size()
}

package export

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestSparseReader reads files with holes in various places and checks that it gives every byte and
// reads only the data from disk.
func TestSparseReader(t *testing.T) {
	holes := supportsHoles(t, t.TempDir())
	cases := map[string]struct {
		size    int64
		extents []extent
	}{
		"empty":            {0, nil},
		"only a hole":      {8 * MiB, nil},
		"only data":        {256 * KiB, []extent{{0, randomBytes(1, 256*KiB)}}},
		"hole data hole":   {8 * MiB, []extent{{3 * MiB, randomBytes(2, 64*KiB)}}},
		"data hole data":   {8 * MiB, []extent{{0, randomBytes(3, 4*KiB)}, {8*MiB - 4*KiB, randomBytes(4, 4*KiB)}}},
		"many extents":     {16 * MiB, []extent{{1 * MiB, textBytes(5, 100)}, {5 * MiB, textBytes(6, 300*KiB)}, {9*MiB + 123, textBytes(7, 10)}, {15 * MiB, textBytes(8, 1*MiB)}}},
		"unaligned ending": {1*MiB + 3, []extent{{1 * MiB, []byte{1, 2, 3}}}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "disk.raw")
			writeRaw(t, path, tc.size, tc.extents...)
			want := make([]byte, tc.size)
			var data int64
			for _, e := range tc.extents {
				copy(want[e.off:], e.data)
				data += int64(len(e.data))
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := f.Close(); err != nil {
					t.Error(err)
				}
			}()
			sr, err := newSparseReader(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			counter := &countingReaderAt{r: f}
			sr.r = counter
			// An odd buffer size, so reads end in the middle of extents and holes.
			got, err := io.ReadAll(io.LimitReader(struct{ io.Reader }{sr}, tc.size+1))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("content differs (%d bytes read, %d expected)", len(got), len(want))
			}
			// File systems allocate whole blocks: allow one block around each extent.
			if limit := data + int64(len(tc.extents))*2*sparseBlock; holes && counter.n > limit {
				t.Errorf("read %d bytes from disk for %d bytes of data", counter.n, data)
			}
		})
	}
}

// TestCompressSparseRaw compresses a 2 GiB raw file holding 1 MiB of data. It must read about 1 MiB
// from the disk, not 2 GiB, and the stream must give the file back.
func TestCompressSparseRaw(t *testing.T) {
	requireTools(t, "qemu-img")
	dir := t.TempDir()
	if !supportsHoles(t, dir) {
		t.Skipf("the file system of %s does not keep holes", dir)
	}
	src := filepath.Join(dir, "disk.raw")
	writeRaw(t, src, 2*GiB, extent{0, randomBytes(1, 512*KiB)}, extent{1*GiB + 4*KiB, textBytes(2, 512*KiB)})
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}()
	sr, err := newSparseReader(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	counter := &countingReaderAt{r: f}
	sr.r = counter
	zst := filepath.Join(dir, "disk.raw.zst")
	out, err := os.Create(zst)
	if err != nil {
		t.Fatal(err)
	}
	res, err := compressStream(&env{}, sr, out, DefaultLevel)
	if err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if counter.n > 2*MiB {
		t.Errorf("read %d bytes from a file with 1 MiB of data", counter.n)
	}
	if sum := fileSHA256(t, zst); res.sha256 != sum {
		t.Errorf("sha256 while writing %s, of the file %s", res.sha256, sum)
	}
	back := filepath.Join(dir, "back.raw")
	if err := Decompress(context.Background(), zst, back); err != nil {
		t.Fatal(err)
	}
	requireIdentical(t, src, "raw", back, "raw")
	if st, err := os.Stat(back); err != nil || st.Size() != 2*GiB {
		t.Fatalf("decompressed size: %v %v", st, err)
	}
	if a := allocated(t, back); a > 4*MiB {
		t.Errorf("the decompressed file occupies %d bytes for 1 MiB of data: not sparse", a)
	}
	t.Logf("2 GiB, 1 MiB of data: %d bytes read, %d bytes compressed", counter.n, res.size)
}

// TestDecompress checks content, sparseness and the final size of decompressed files, from streams
// made by this package and by the zstd tool.
func TestDecompress(t *testing.T) {
	holes := supportsHoles(t, t.TempDir())
	cases := map[string]struct {
		size    int64
		extents []extent
	}{
		"leading hole":      {16 * MiB, []extent{{12 * MiB, randomBytes(1, 1*MiB)}}},
		"trailing hole":     {16 * MiB, []extent{{0, randomBytes(2, 1*MiB)}}},
		"data at both ends": {16 * MiB, []extent{{0, textBytes(3, 100)}, {16*MiB - 10, textBytes(4, 10)}}},
		"no holes":          {3 * MiB, []extent{{0, randomBytes(5, 3*MiB)}}},
		"odd size":          {10*MiB + 17, []extent{{5 * MiB, textBytes(6, 5*MiB+17)}}},
		"empty":             {0, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			want := make([]byte, tc.size)
			var data int64
			for _, e := range tc.extents {
				copy(want[e.off:], e.data)
				data += int64(len(e.data))
			}
			streams := map[string]string{"ours": filepath.Join(dir, "ours.zst")}
			enc, err := zstd.NewWriter(nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(streams["ours"], enc.EncodeAll(want, nil), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := enc.Close(); err != nil {
				t.Fatal(err)
			}
			if haveTool("zstd") {
				raw := filepath.Join(dir, "in.raw")
				writeRaw(t, raw, tc.size, tc.extents...)
				streams["zstd tool"] = filepath.Join(dir, "cli.zst")
				run(t, "zstd", "-q", "-o", streams["zstd tool"], raw)
			}
			for from, zst := range streams {
				out := filepath.Join(dir, "out-"+filepath.Base(zst)+".raw")
				if err := Decompress(context.Background(), zst, out); err != nil {
					t.Fatalf("%s: %v", from, err)
				}
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: content differs (%d bytes, want %d)", from, len(got), len(want))
				}
				if a := allocated(t, out); holes && a > data+int64(len(tc.extents))*2*sparseBlock {
					t.Errorf("%s: the file occupies %d bytes for %d bytes of data", from, a, data)
				}
			}
		})
	}
}

// TestDecompressErrors checks that a truncated or foreign stream fails and leaves no file.
func TestDecompressErrors(t *testing.T) {
	dir := t.TempDir()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	full := enc.EncodeAll(randomBytes(1, 1*MiB), nil)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"truncated":   full[:len(full)/2],
		"not zstd":    []byte("plain text, not a zstd stream"),
		"bad content": append(append([]byte{}, full[:len(full)-8]...), 1, 2, 3, 4, 5, 6, 7, 8),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(dir, name+".zst")
			if err := os.WriteFile(src, data, 0o600); err != nil {
				t.Fatal(err)
			}
			outDir := t.TempDir()
			if err := Decompress(context.Background(), src, filepath.Join(outDir, "out.raw")); err == nil {
				t.Fatal("no error")
			} else {
				t.Log(err)
			}
			if got := listDir(t, outDir); len(got) != 0 {
				t.Errorf("files left: %v", got)
			}
		})
	}
}

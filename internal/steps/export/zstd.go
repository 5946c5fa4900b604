package export

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/klauspost/compress/zstd"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// Zstd levels as the reference zstd tool numbers them. Level 0 in a Request means DefaultLevel.
const (
	MinLevel     = 1
	MaxLevel     = 22
	DefaultLevel = 3 // zstd's own default, and config.DefaultZstdLevel
)

// EncoderLevel returns the klauspost/compress encoder level that a reference zstd level maps to, with
// zstd.EncoderLevelFromZstd. The pure-Go encoder has four levels, not 22:
//
//	zstd 1-2   -> SpeedFastest            (ratio about zstd -1)
//	zstd 3-5   -> SpeedDefault            (about zstd -3)
//	zstd 6-9   -> SpeedBetterCompression  (about zstd -7)
//	zstd 10-22 -> SpeedBestCompression    (about zstd -11)
//
// So "level = 19" gives the ratio of roughly zstd -11: on a 512 MiB image of programs with holes
// (BenchmarkZstdVsCLI, 2 cores) the output was 14 % larger than "zstd -T0 -19" and took an eighth of
// its time (14 MB/s against 1.7 MB/s). At level 3 the sizes match within 2 % and the zstd tool is
// faster. Whoever needs the last percents of -19 can recompress with the zstd tool. Every level uses an 8 MiB window (4 MiB for the fastest), the window of zstd
// -19 as well, so any zstd decoder reads the output with its default memory limit.
func EncoderLevel(level int) zstd.EncoderLevel {
	return zstd.EncoderLevelFromZstd(level)
}

// newEncoder makes the zstd stream encoder for level.
//
// WithEncoderConcurrency alone does not use all cores for one stream: it lets at most two goroutines
// work on it. WithConcurrentBlocks splits the stream into jobs of four windows compressed in parallel,
// each primed with the end of the previous job, as the zstd tool's -T0 does; the output is still one
// frame that any decoder reads, and is the same for the same input and library version.
func newEncoder(level int) (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(EncoderLevel(level)),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithConcurrentBlocks(true),
		zstd.WithEncoderCRC(true),
	)
}

// compressed is what compressing wrote.
type compressed struct {
	size     int64  // bytes written
	sha256   string // hex SHA-256 of those bytes
	consumed int64  // input bytes consumed, for the size estimate after a failure
	input    int64  // input size
}

// compressFile zstd-compresses the file at src into w, skipping the reads of its holes, and hashes the
// output as it goes, so the output is never read back.
func compressFile(ctx context.Context, env *env, src string, w io.Writer, level int) (res compressed, err error) {
	f, err := os.Open(src)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	sr, err := newSparseReader(ctx, f)
	if err != nil {
		return res, err
	}
	return compressStream(env, sr, w, level)
}

// compressStream is compressFile on an open sparseReader.
func compressStream(env *env, sr *sparseReader, w io.Writer, level int) (res compressed, err error) {
	res.input = sr.size
	m := env.meter(PhaseCompress, sr.size)
	sr.onRead = func(done int64) {
		res.consumed = done
		m.report(done)
	}
	m.report(0)
	enc, err := newEncoder(level)
	if err != nil {
		return res, err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, h)}
	// The frame header then carries the uncompressed size, which "zstd -l" shows and which lets the
	// encoder check that it got every byte.
	enc.ResetContentSize(cw, sr.size)
	if _, err := enc.ReadFrom(sr); err != nil {
		// The stream is abandoned. Reset waits for the encoder's goroutines and detaches it from the
		// output; Close then ends an empty stream into io.Discard, instead of adding that fewer bytes came
		// than the frame header announced.
		enc.Reset(io.Discard)
		res.size = cw.n
		return res, errors.Join(err, enc.Close())
	}
	err = enc.Close()
	res.size = cw.n
	if err != nil {
		return res, err
	}
	res.sha256 = hex.EncodeToString(h.Sum(nil))
	return res, nil
}

// countWriter counts what passes through.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// hashFile returns the size and hex SHA-256 of the file at f, reading only its data extents (holes read as
// zeros without touching the disk) and reporting progress: unlike fsutil.HashFile it works on the open,
// still unnamed output, and a sparse 4 GiB image with 600 MB of data costs 600 MB of reads.
func hashFile(ctx context.Context, env *env, f *os.File) (int64, string, error) {
	sr, err := newSparseReader(ctx, f)
	if err != nil {
		return 0, "", err
	}
	m := env.meter(PhaseChecksum, sr.size)
	sr.onRead = m.report
	m.report(0)
	sum, _, err := fsutil.Hash(ctx, sr)
	if err != nil {
		return 0, "", fmt.Errorf("checksum %s: %w", f.Name(), err)
	}
	return sr.size, sum, nil
}

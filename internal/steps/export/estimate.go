package export

import (
	"errors"
	"os"

	"github.com/klauspost/compress/zstd"
)

// Sampling for estimateCompressed: up to sampleChunks chunks of sampleChunk bytes, spread evenly over
// the data. 64 MiB compresses in well under a second even at the best level.
const (
	sampleChunk  = 1 << 20
	sampleChunks = 64
)

// estimateCompressed guesses the size of the zstd stream of the file at path, for the "needed about"
// of a full disk: when compression fails on ENOSPC, the encoder has read far ahead of what it wrote
// (whole jobs of up to 32 MiB per core), so the bytes written so far say little. It compresses a sample
// of the file's data extents at the same level and applies the ratio to all the data; holes compress to
// almost nothing and are left out.
func estimateCompressed(path string, level int) (n int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	extents, err := dataExtents(f, st.Size())
	if err != nil {
		return 0, err
	}
	var data int64
	for _, e := range extents {
		data += e[1] - e[0]
	}
	if data == 0 {
		return 0, nil
	}
	chunks := min((data+sampleChunk-1)/sampleChunk, sampleChunks)
	var sample []byte
	for i := range chunks {
		// The chunk starting at position pos of the data, extents laid end to end.
		pos := i * data / chunks
		for _, e := range extents {
			if l := e[1] - e[0]; pos >= l {
				pos -= l
				continue
			}
			buf := make([]byte, min(sampleChunk, e[1]-e[0]-pos))
			m, err := f.ReadAt(buf, e[0]+pos)
			if err != nil && m < len(buf) {
				return 0, err
			}
			sample = append(sample, buf[:m]...)
			break
		}
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(EncoderLevel(level)))
	if err != nil {
		return 0, err
	}
	out := enc.EncodeAll(sample, nil)
	if err := enc.Close(); err != nil {
		return 0, err
	}
	return int64(float64(data) * float64(len(out)) / float64(max(len(sample), 1))), nil
}

// dataExtents lists the [start, end) data extents of f, or the whole file where the file system cannot
// tell its holes.
func dataExtents(f *os.File, size int64) ([][2]int64, error) {
	s := &sparseReader{f: f, size: size}
	var extents [][2]int64
	for s.off < size {
		if err := s.locate(); err != nil {
			return nil, err
		}
		if s.holeEnd > s.off {
			s.off = s.holeEnd
			continue
		}
		extents = append(extents, [2]int64{s.off, s.dataEnd})
		s.off = s.dataEnd
	}
	return extents, nil
}

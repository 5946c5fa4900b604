package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sparseReader reads a file from start to end like any reader, but produces the file's holes from
// memory instead of reading them: it asks the file system where the data is (lseek SEEK_DATA and
// SEEK_HOLE) and reads only that. A 4 GiB raw disk with 600 MB of data costs 600 MB of reads, not 4 GiB;
// the consumer (the zstd encoder, a hash) still sees every zero, because the output has to hold them.
//
// On a file system that cannot report holes every byte is read, which is slower but the same result.
type sparseReader struct {
	ctx     context.Context
	f       *os.File    // where SEEK_DATA and SEEK_HOLE are asked
	r       io.ReaderAt // where the data is read; f, or a wrapper in tests that count reads
	size    int64       // fixed when the reader is made: the flattened image does not change under us
	off     int64
	dataEnd int64 // [off, dataEnd) is known to be data
	holeEnd int64 // [off, holeEnd) is known to be a hole
	noSeek  bool  // the file system does not support SEEK_DATA: read everything
	onRead  func(done int64)
}

func newSparseReader(ctx context.Context, f *os.File) (*sparseReader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", f.Name())
	}
	return &sparseReader{ctx: ctx, f: f, r: f, size: st.Size()}, nil
}

// Read fills p from the current data extent or hole, never crossing from one to the other, so that a
// hole is never read from disk.
func (s *sparseReader) Read(p []byte) (int, error) {
	// Checked on every call: the encoder reads in big steps, so this is cheap and lets a cancelled
	// export stop within one read.
	if err := s.ctx.Err(); err != nil {
		return 0, context.Cause(s.ctx)
	}
	if s.off >= s.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if s.off >= s.dataEnd && s.off >= s.holeEnd {
		if err := s.locate(); err != nil {
			return 0, err
		}
	}
	var n int
	if s.off < s.holeEnd {
		n = int(min(int64(len(p)), s.holeEnd-s.off))
		clear(p[:n])
	} else {
		want := int(min(int64(len(p)), s.dataEnd-s.off))
		var err error
		n, err = s.r.ReadAt(p[:want], s.off)
		if n < want {
			if err == nil || errors.Is(err, io.EOF) {
				err = fmt.Errorf("read %s: the file shrank while it was read: %w", s.f.Name(), io.ErrUnexpectedEOF)
			}
			return n, err
		}
	}
	s.off += int64(n)
	if s.onRead != nil {
		s.onRead(s.off)
	}
	return n, nil
}

// locate finds whether the bytes at s.off are data or a hole, and how far that extends.
func (s *sparseReader) locate() error {
	if s.noSeek {
		s.dataEnd = s.size
		return nil
	}
	data, err := s.f.Seek(s.off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, syscall.ENXIO):
		// No data after off: the rest of the file is a hole.
		s.holeEnd = s.size
		return nil
	case errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP):
		s.noSeek = true
		s.dataEnd = s.size
		return nil
	case err != nil:
		return fmt.Errorf("find data in %s: %w", s.f.Name(), err)
	}
	if data > s.off {
		s.holeEnd = min(data, s.size)
		return nil
	}
	hole, err := s.f.Seek(s.off, unix.SEEK_HOLE)
	if err != nil {
		return fmt.Errorf("find holes in %s: %w", s.f.Name(), err)
	}
	// Every file ends with an implicit hole, so hole > off; guard anyway against an odd file system
	// so that Read always advances.
	s.dataEnd = min(max(hole, s.off+1), s.size)
	return nil
}

// sparseBlock is the unit sparseWriter checks for zeros: the block size of common Linux file systems,
// the smallest hole they can keep.
const sparseBlock = 4096

// sparseWriter writes a stream to a file from offset 0, seeking over all-zero blocks instead of writing
// them, as "zstd -d --sparse" and "cp --sparse" do. finish sets the final size, which also makes a
// trailing run of zeros a hole.
type sparseWriter struct {
	f   *os.File
	off int64
}

var zeroBlock [sparseBlock]byte

// write writes p at the current offset. Runs of non-zero blocks are written with one call each.
func (w *sparseWriter) write(p []byte) error {
	start := -1 // start in p of the pending run of data blocks
	for i := 0; i < len(p); i += sparseBlock {
		b := p[i:min(i+sparseBlock, len(p))]
		if bytes.Equal(b, zeroBlock[:len(b)]) {
			if start >= 0 {
				if err := w.flush(p[start:i], int64(start)); err != nil {
					return err
				}
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		if err := w.flush(p[start:], int64(start)); err != nil {
			return err
		}
	}
	w.off += int64(len(p))
	return nil
}

func (w *sparseWriter) flush(run []byte, at int64) error {
	_, err := w.f.WriteAt(run, w.off+at)
	return err
}

// finish gives the file its full length.
func (w *sparseWriter) finish() error {
	return w.f.Truncate(w.off)
}

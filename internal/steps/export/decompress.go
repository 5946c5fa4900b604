package export

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// decompressChunk is how much Decompress decodes between checks of ctx; a multiple of sparseBlock, so
// sparseWriter sees block-aligned chunks.
const decompressChunk = 4 << 20

// Decompress decodes the zstd file src into dst, sparse, like "zstd -d --sparse": all-zero blocks are
// skipped with a seek instead of written, so a 4 GiB raw image with 600 MB of data takes about 600 MB
// on disk. dst is written atomically (OutputPerm), replacing a file already there only on success.
// It is what tests and end-to-end checks use to get the image back.
func Decompress(ctx context.Context, src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("decompress: %w", err)
	}
	defer func() { err = errors.Join(err, in.Close()) }()
	dec, err := zstd.NewReader(bufio.NewReaderSize(in, 1<<20))
	if err != nil {
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	defer dec.Close()

	out, err := fsutil.CreateAtomic(dst, OutputPerm)
	if err != nil {
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	defer func() { err = errors.Join(err, out.Abort()) }()

	w := &sparseWriter{f: out.File()}
	buf := make([]byte, decompressChunk)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("decompress %s: %w", src, context.Cause(ctx))
		}
		n, end, rerr := fill(dec, buf)
		if rerr != nil {
			// A truncated or corrupt stream ends here, never as a short but "complete" image.
			return fmt.Errorf("decompress %s: %w", src, rerr)
		}
		if err := w.write(buf[:n]); err != nil {
			return fmt.Errorf("decompress %s: write %s: %w", src, dst, err)
		}
		if end {
			break
		}
	}
	if err := w.finish(); err != nil {
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	return nil
}

// fill reads into buf until it is full or the stream ends. Unlike io.ReadFull it keeps the decoder's own
// errors (a truncated stream is io.ErrUnexpectedEOF from the decoder) apart from the clean end of the
// stream.
func fill(r io.Reader, buf []byte) (n int, end bool, err error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF { // the Reader contract: io.EOF itself, never wrapped, marks the clean end
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

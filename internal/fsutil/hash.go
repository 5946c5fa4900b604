package fsutil

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
)

// HashChunk is how much [Hash] reads between two looks at ctx: 1 MiB, a few milliseconds of hashing.
const HashChunk = 1 << 20

// HashFile returns the lowercase hex SHA-256 and the size of the file at path. It reads in chunks and
// stops with ctx's error when ctx ends, as hashing a multi-GB image takes a while.
func HashFile(ctx context.Context, path string) (sum string, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	sum, size, err = Hash(ctx, f)
	if err = errors.Join(err, f.Close()); err != nil {
		return "", 0, err
	}
	return sum, size, nil
}

// Hash returns the lowercase hex SHA-256 of what r yields until io.EOF and how many bytes that was,
// reading [HashChunk] bytes at a time and stopping with context.Cause(ctx) when ctx ends. Read errors are
// returned as they are (an *os.File's name the file).
func Hash(ctx context.Context, r io.Reader) (sum string, n int64, err error) {
	h := sha256.New()
	buf := make([]byte, HashChunk)
	for {
		if ctx.Err() != nil {
			return "", n, context.Cause(ctx)
		}
		m, err := io.ReadFull(r, buf)
		h.Write(buf[:m]) // a hash.Hash never returns an error
		n += int64(m)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return hex.EncodeToString(h.Sum(nil)), n, nil
		}
		if err != nil {
			return "", n, err
		}
	}
}

package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxSumsSize bounds what is read as a sums file, so that a checksum pointing at the image itself by
// mistake fails fast instead of downloading gigabytes during a plan.
const maxSumsSize = 64 << 20

// ResolveChecksum turns req.Checksum into a concrete checksum for req.URL. An empty Checksum gives the zero
// Checksum (none declared); "type:value" is parsed; "file:<url or path>" downloads only that sums file
// (never the image), reads it in GNU or BSD style and picks the line for the image's file name; req.Warn
// hears when the file is PGP-signed, as the signature is not checked. The planner calls this to compute
// keys; passing the result's String() as a later Request.Checksum spares Fetch a second download of the
// sums file. It checks req.URL too, so that a source Fetch would refuse (s3::, git::...) fails at plan
// time.
func (f *Fetcher) ResolveChecksum(ctx context.Context, req Request) (Checksum, error) {
	img, err := parseSource(req.URL, req.BaseDir)
	if err != nil {
		return Checksum{}, err
	}
	return f.resolveChecksum(ctx, req, img)
}

// Redact renders a source or sums file address as written, for messages, with any credentials in it
// redacted.
func Redact(raw string) string { return redactRaw(strings.TrimSpace(raw)) }

// resolveChecksum is ResolveChecksum for the parsed source img.
func (f *Fetcher) resolveChecksum(ctx context.Context, req Request, img source) (Checksum, error) {
	spec := strings.TrimSpace(req.Checksum)
	if spec == "" {
		return Checksum{}, nil
	}
	typ, sumsRef, typed := strings.Cut(spec, ":")
	if !typed || !strings.EqualFold(typ, "file") {
		return ParseChecksum(spec)
	}
	sums, err := parseSource(sumsRef, req.BaseDir)
	if err != nil {
		return Checksum{}, fmt.Errorf("checksum file: %w", err)
	}
	data, err := f.readSums(ctx, sums)
	if err != nil {
		return Checksum{}, err
	}
	entries, signed, err := parseSignedSums(sums.display, data)
	if err != nil {
		return Checksum{}, err
	}
	sum, err := matchSums(sums.display, img.name, img.relativeTo(sums), entries)
	if err == nil && signed && req.Warn != nil {
		req.Warn(signedWarning(sums.display, sum))
	}
	return sum, err
}

// readSums returns the content of a sums file: read in place when local, else downloaded through go-getter
// into a temp folder that is removed afterwards (the file is small and, for "latest" URLs, changes, so it
// is never kept).
func (f *Fetcher) readSums(ctx context.Context, sums source) (data []byte, err error) {
	if sums.local != "" {
		return readLimited(sums.local, sums.display)
	}
	dir, err := os.MkdirTemp("", "imgform-sums-")
	if err != nil {
		return nil, fmt.Errorf("checksum file %s: %w", sums.display, err)
	}
	defer func() {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	dst := filepath.Join(dir, "sums")
	if err := getFile(ctx, sums, Checksum{}, dst, bound{limit: maxSumsSize, space: f.spaceCheck()}, nil); err != nil {
		if tooLarge := (*TooLargeError)(nil); errors.As(err, &tooLarge) {
			return nil, fmt.Errorf("checksum file %s is larger than %d MiB: is it really a sums file?", sums.display, maxSumsSize>>20)
		}
		return nil, fmt.Errorf("download checksum file %s: %w", sums.display, err)
	}
	return readLimited(dst, sums.display)
}

// readLimited reads a sums file of at most maxSumsSize bytes.
func readLimited(path, display string) (data []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checksum file: %w", err)
	}
	defer closeErr(f, &err)
	data, err = io.ReadAll(io.LimitReader(f, maxSumsSize+1))
	if err != nil {
		return nil, fmt.Errorf("checksum file %s: %w", display, err)
	}
	if len(data) > maxSumsSize {
		return nil, fmt.Errorf("checksum file %s is larger than %d MiB: is it really a sums file?", display, maxSumsSize>>20)
	}
	return data, nil
}

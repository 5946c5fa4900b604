// Package export is the last step of an image build: it flattens the cached qcow2 layer chain into one
// image with qemu-img, optionally compresses it, and writes it atomically with its SHA-256, then records
// the outputs in SHA256SUMS and a JSON manifest.
//
// Three compressions are offered, with different trade-offs (figures for a 4 GiB Debian image with
// 650 MB allocated, from the field notes):
//
//   - "none": a sparse raw or a qcow2 file, usable at once.
//   - "qcow2-zstd": qcow2 with zstd-compressed clusters (qemu-img convert -c); libvirt runs it as is.
//     About 258 MB, made in 6.5 s.
//   - "zstd": the whole image as one zstd stream, for distribution (about 229 MB at level 3); unpack
//     with "zstd -d --sparse" or Decompress before use.
//
// The zstd stream is written by github.com/klauspost/compress/zstd in-process, on all cores, reading
// only the data extents of the flattened image (holes come from memory) and hashing while writing. Its
// four encoder levels stand for zstd's 22; see EncoderLevel for the mapping and what it costs against
// the zstd tool.
//
// Nothing here prints: progress and log lines go to the callbacks of Request.
package export

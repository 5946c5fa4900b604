package export

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// Output formats.
const (
	FormatQcow2 = "qcow2"
	FormatRaw   = "raw"
	// FormatVMDK is a streamOptimized VMDK, the compressed disk of OVF/OVA packages that vSphere, ESXi and
	// VMware Workstation import; FormatVHDX a dynamic VHDX for Hyper-V.
	FormatVMDK = "vmdk"
	FormatVHDX = "vhdx"
)

// Compressions.
const (
	// CompressionNone writes the flattened image as is (sparse, for raw).
	CompressionNone = "none"
	// CompressionZstd compresses the whole flattened image into one zstd stream (".qcow2.zst", ".raw.zst").
	CompressionZstd = "zstd"
	// CompressionQcow2Zstd writes a qcow2 whose clusters are zstd-compressed inside the file: libvirt
	// and QEMU use it as it is, without unpacking, at the price of a larger file than CompressionZstd.
	CompressionQcow2Zstd = "qcow2-zstd"
)

// Phases, as passed to Request.Progress and listed in Result.Phases.
const (
	PhaseInspect  = "inspect"  // qemu-img info on the source chain
	PhaseFlatten  = "flatten"  // qemu-img convert of the chain into one image
	PhaseCompress = "compress" // zstd of the flattened image (CompressionZstd)
	PhaseChecksum = "checksum" // SHA-256 of the output written by qemu-img (other compressions)
	PhaseCommit   = "commit"   // fsync and rename into place
)

// OutputPerm is the mode of the exported files: images are not secret, and the key the build used to
// reach the guest is removed from the image by the cleanup step.
const OutputPerm os.FileMode = 0o644

// Request describes one export.
type Request struct {
	// Source is the top disk layer: a qcow2 file whose backing chain lives elsewhere (the cache), or a
	// plain qcow2 or raw image. It is only read.
	Source string
	// Format is FormatQcow2 (the default when empty), FormatRaw, FormatVMDK or FormatVHDX.
	Format string
	// Compression is CompressionNone (the default when empty), CompressionZstd or CompressionQcow2Zstd
	// (which needs FormatQcow2).
	Compression string
	// Level is the zstd level, MinLevel to MaxLevel, for CompressionZstd only; 0 means DefaultLevel.
	// See EncoderLevel for what the levels become.
	Level int
	// Dest is the final path. It appears only when the export succeeds; a file already there is
	// replaced at once then, and left untouched on any failure.
	Dest string
	// TempDir holds the intermediate flattened image of CompressionZstd. Empty means Dest's folder.
	// It needs room for the flattened image: about the allocated size of the chain.
	TempDir string
	// Progress, when set, is called with the phase name, bytes done and bytes in all. Calls never
	// overlap, but may come from another goroutine than Export's; the callback must not block long.
	Progress func(phase string, done, total int64)
	// Log, when set, receives one line per notable event (commands run, retries).
	Log func(string)
}

// Result describes the exported file.
type Result struct {
	Path        string // Dest
	Format      string
	Compression string
	Level       int         // the zstd level used; 0 unless CompressionZstd
	Size        int64       // bytes of the file at Path (its apparent size)
	SHA256      string      // hex SHA-256 of the file at Path
	VirtualSize int64       // size of the disk inside, as the guest sees it
	Phases      []PhaseTime // duration of each phase, in order
	Duration    time.Duration
}

// PhaseTime is how long one phase took.
type PhaseTime struct {
	Name     string
	Duration time.Duration
}

// Export flattens the Source chain into one image and writes it to Dest in the requested format and
// compression, atomically: on any error, a cancelled ctx or a full disk, Dest is left as it was and no
// temp or intermediate file remains. qemu-img runs in its own process group and dies with ctx. The files
// being written are unnamed where the file system allows, so that even a SIGKILL of the process leaves
// none behind (see tmpfile.go).
func Export(ctx context.Context, req Request) (Result, error) {
	start := time.Now()
	r, err := req.normalize()
	if err != nil {
		return Result{}, fmt.Errorf("export %s: %w", req.Dest, err)
	}
	x := &exporter{req: r, env: &env{log: r.Log, progress: r.Progress}}
	res, err := x.run(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("export %s: %w", r.Dest, err)
	}
	res.Duration = time.Since(start)
	return res, nil
}

// normalize applies the defaults, makes paths absolute and checks the request before anything runs.
func (r Request) normalize() (Request, error) {
	if r.Format == "" {
		r.Format = FormatQcow2
	}
	if r.Compression == "" {
		r.Compression = CompressionNone
	}
	if !slices.Contains([]string{FormatQcow2, FormatRaw, FormatVMDK, FormatVHDX}, r.Format) {
		return r, fmt.Errorf("unknown format %q: use %q, %q, %q or %q", r.Format, FormatQcow2, FormatRaw, FormatVMDK, FormatVHDX)
	}
	switch r.Compression {
	case CompressionZstd:
		if r.Level == 0 {
			r.Level = DefaultLevel
		}
		if r.Level < MinLevel || r.Level > MaxLevel {
			return r, fmt.Errorf("zstd level %d out of range %d-%d", r.Level, MinLevel, MaxLevel)
		}
	case CompressionNone, CompressionQcow2Zstd:
		if r.Level != 0 {
			return r, fmt.Errorf("level %d given for compression %q: a level applies to %q only (qemu-img has no level for %q)",
				r.Level, r.Compression, CompressionZstd, CompressionQcow2Zstd)
		}
		if r.Compression == CompressionQcow2Zstd && r.Format != FormatQcow2 {
			return r, fmt.Errorf("compression %q needs format %q, not %q", r.Compression, FormatQcow2, r.Format)
		}
	default:
		return r, fmt.Errorf("unknown compression %q: use %q, %q or %q", r.Compression,
			CompressionNone, CompressionZstd, CompressionQcow2Zstd)
	}
	if r.Source == "" || r.Dest == "" {
		return r, errors.New("source and destination paths are required")
	}
	var err error
	if r.Source, err = filepath.Abs(r.Source); err != nil {
		return r, err
	}
	if r.Dest, err = filepath.Abs(r.Dest); err != nil {
		return r, err
	}
	if r.TempDir == "" {
		r.TempDir = filepath.Dir(r.Dest)
	}
	if r.TempDir, err = filepath.Abs(r.TempDir); err != nil {
		return r, err
	}
	return r, nil
}

// exporter is one running export.
type exporter struct {
	req    Request
	env    *env
	src    sourceInfo
	phases []PhaseTime
}

// phase runs f as the named phase and records its duration.
func (x *exporter) phase(name string, f func() error) error {
	start := time.Now()
	err := f()
	x.phases = append(x.phases, PhaseTime{Name: name, Duration: time.Since(start)})
	return err
}

func (x *exporter) run(ctx context.Context) (res Result, err error) {
	r := x.req
	if err := checkDir(filepath.Dir(r.Dest), "destination folder"); err != nil {
		return res, err
	}
	if err := checkDir(r.TempDir, "temp folder"); err != nil {
		return res, err
	}
	if st, err := os.Stat(r.Dest); err == nil {
		if st.IsDir() {
			return res, fmt.Errorf("destination %s is a folder", r.Dest)
		}
		if sst, err := os.Stat(r.Source); err == nil && os.SameFile(st, sst) {
			return res, fmt.Errorf("destination %s is the source itself", r.Dest)
		}
	}
	if err := x.phase(PhaseInspect, func() (err error) {
		x.src, err = inspect(ctx, x.env, r.Source)
		return err
	}); err != nil {
		return res, err
	}
	x.env.logf("source %s: %s, %d layer(s), virtual size %d, %d bytes allocated",
		r.Source, x.src.Format, x.src.Layers, x.src.VirtualSize, x.src.Allocated)

	out, err := createOutput(r.Dest)
	if err != nil {
		return res, noSpace(err, r.Dest, x.src.Allocated)
	}
	defer func() {
		// A no-op after a successful Commit; otherwise the temp file goes.
		err = errors.Join(err, out.Abort())
	}()

	res = Result{Path: r.Dest, Format: r.Format, Compression: r.Compression, VirtualSize: x.src.VirtualSize}
	if r.Compression == CompressionZstd {
		res.Level = r.Level
		err = x.flattenAndCompress(ctx, out, &res)
	} else {
		err = x.flattenInPlace(ctx, out, &res)
	}
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, context.Cause(ctx)
	}
	if err := x.phase(PhaseCommit, func() error { return out.Commit(r.Dest) }); err != nil {
		return res, noSpace(err, r.Dest, res.Size)
	}
	res.Phases = x.phases
	return res, nil
}

// flattenInPlace lets qemu-img write the output straight into the output's temp file (none and
// qcow2-zstd), then hashes it: qemu-img cannot hash what it writes, so this costs one read of the data
// extents; holes are hashed from memory.
func (x *exporter) flattenInPlace(ctx context.Context, out *workFile, res *Result) error {
	r := x.req
	spec := flattenSpec{src: r.Source, srcFormat: x.src.Format, dst: out.ToolPath(), format: r.Format,
		zstdClusters: r.Compression == CompressionQcow2Zstd, virtualSize: x.src.VirtualSize}
	if err := x.phase(PhaseFlatten, func() error { return flatten(ctx, x.env, spec) }); err != nil {
		return noSpace(err, r.Dest, x.src.Allocated)
	}
	return x.phase(PhaseChecksum, func() (err error) {
		res.Size, res.SHA256, err = hashFile(ctx, x.env, out.File())
		return err
	})
}

// flattenAndCompress flattens into an intermediate file in TempDir, then compresses that into the
// output. The intermediate is removed whatever happens.
func (x *exporter) flattenAndCompress(ctx context.Context, out *workFile, res *Result) (err error) {
	r := x.req
	tmp, err := createIntermediate(r.TempDir, ".imgform-flat-*."+r.Format)
	if err != nil {
		return noSpace(fmt.Errorf("create intermediate file: %w", err), r.TempDir, x.src.Allocated)
	}
	defer func() { err = errors.Join(err, tmp.Abort()) }()
	// qemu-img writes the file through its own descriptor; ours keeps it alive (and locked) and is where
	// the compression reads.
	tmpPath := tmp.ToolPath()
	spec := flattenSpec{src: r.Source, srcFormat: x.src.Format, dst: tmpPath, format: r.Format,
		virtualSize: x.src.VirtualSize}
	if err := x.phase(PhaseFlatten, func() error { return flatten(ctx, x.env, spec) }); err != nil {
		return noSpace(err, "the flattened image ("+tmp.Display()+")", x.src.Allocated)
	}
	x.env.logf("compress %s with zstd level %d (encoder %s, %d threads)", tmp.Display(), r.Level,
		EncoderLevel(r.Level), runtime.GOMAXPROCS(0))
	var c compressed
	err = x.phase(PhaseCompress, func() (err error) {
		c, err = compressFile(ctx, x.env, tmpPath, out, r.Level)
		return err
	})
	if err != nil {
		if isNoSpace(err) {
			err = noSpace(err, r.Dest, x.estimateOutput(tmpPath, c))
		}
		return err
	}
	res.Size, res.SHA256 = c.size, c.sha256
	return nil
}

// estimateOutput guesses the size of the whole compressed output after a full disk stopped it: from a
// sample of the intermediate file, or failing that from the ratio so far.
func (x *exporter) estimateOutput(intermediate string, c compressed) int64 {
	n, err := estimateCompressed(intermediate, x.req.Level)
	if err == nil && n <= 0 {
		err = fmt.Errorf("%s holds no data to sample", intermediate)
	}
	if err != nil {
		x.env.logf("cannot estimate the compressed size: %v", err)
		if c.consumed > 0 {
			n = int64(float64(c.size) * float64(c.input) / float64(c.consumed))
		}
	}
	return max(n, c.size)
}

// checkDir reports a missing folder in words a user can act on, before any work starts.
func checkDir(dir, what string) error {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s %s does not exist", what, dir)
	case err != nil:
		return fmt.Errorf("%s %s: %w", what, dir, err)
	case !st.IsDir():
		return fmt.Errorf("%s %s is not a folder", what, dir)
	}
	return nil
}

package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// qemuImgPath is the qemu-img program; tests and packagers can point it elsewhere.
var qemuImgPath = "qemu-img"

// flattenSpec says how to flatten the source chain into one image.
type flattenSpec struct {
	src, srcFormat string
	dst, format    string // dst is an existing empty file (a workFile.ToolPath): qemu-img reuses the inode
	zstdClusters   bool   // qcow2 with internally zstd-compressed clusters
	virtualSize    int64  // for progress in bytes
}

// convertArgs builds the qemu-img convert command line.
//
//   - -f names the source format found by inspect, so the top layer is not probed again; the backing
//     chain is followed from the layers' own headers.
//   - -p prints progress, which flatten turns into Progress calls.
//   - qcow2 gets compat=1.1 (readable by every QEMU and libvirt since 1.1, needed for zstd clusters
//     and zero clusters); it stays sparse by default: convert only allocates clusters that hold data.
//   - -W (out-of-order writes) is used for raw only. In raw every byte has a fixed place, so the order
//     of the writes cannot change the result; in qcow2 clusters are allocated in write order, and -W
//     would make the file layout, and so the SHA-256 of the output, differ from run to run.
//   - vmdk is streamOptimized (what OVF/OVA import takes), vhdx dynamic (what Hyper-V creates itself).
//   - -m stays at qemu-img's default of 8 coroutines, plenty for a local disk.
//   - paths are absolute: qemu-img takes "name:rest" as a protocol prefix, and a leading "/" stops that.
func convertArgs(s flattenSpec) []string {
	args := []string{"convert", "-p", "-f", s.srcFormat, "-O", s.format}
	switch s.format {
	case FormatRaw:
		args = append(args, "-W")
	case FormatQcow2:
		opts := "compat=1.1"
		if s.zstdClusters {
			args = append(args, "-c")
			opts += ",compression_type=zstd"
		}
		args = append(args, "-o", opts)
	case FormatVMDK:
		// streamOptimized: deflate-compressed grains, what OVF/OVA import takes; the adapter type is
		// only a hint in the descriptor, and lsilogic is what VMware tools expect of a Linux guest.
		args = append(args, "-o", "subformat=streamOptimized,adapter_type=lsilogic")
	case FormatVHDX:
		args = append(args, "-o", "subformat=dynamic")
	}
	return append(args, s.src, s.dst)
}

// flatten runs qemu-img convert, reporting progress for phase PhaseFlatten.
func flatten(ctx context.Context, env *env, s flattenSpec) error {
	p := env.meter(PhaseFlatten, s.virtualSize)
	p.report(0)
	w := &progressParser{fn: func(pct float64) { p.report(int64(pct / 100 * float64(s.virtualSize))) }}
	if err := qemuImg(ctx, env, w, convertArgs(s)...); err != nil {
		return err
	}
	p.report(s.virtualSize)
	return nil
}

// lockRetryDelays are the waits between attempts when the source is still locked. Right after QEMU
// exits, qemu-img can still find its lock (the process is gone only once its file descriptors are
// closed, and a caller that saw QMP's SHUTDOWN event may be faster than that). About 4 s in all: long
// enough for a QEMU that is exiting, short enough to fail clearly when a VM really is still running.
var lockRetryDelays = []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second}

// waitRetry waits d or until ctx ends. It is a variable so that tests can release a lock on the first
// retry instead of sleeping.
var waitRetry = func(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// qemuImg runs qemu-img, retrying while the image is locked by another process.
//
// Why retry rather than read with -U (force-share) everywhere: force-share skips the lock, and if QEMU
// is in fact still running and writing, the copy would be a torn image with no error at all. The lock
// is the only sign that the VM is not done, so convert honours it and waits a little for a QEMU that is
// exiting. Only "info" (metadata, see inspect) uses -U.
func qemuImg(ctx context.Context, env *env, stdout io.Writer, args ...string) error {
	for attempt := 0; ; attempt++ {
		env.logf("run %s %s", qemuImgPath, strings.Join(args, " "))
		err := runTool(ctx, stdout, qemuImgPath, args...)
		var te *ToolError
		if err == nil || !errors.As(err, &te) || !isLockError(te.Stderr) {
			return err
		}
		if attempt == len(lockRetryDelays) {
			return fmt.Errorf("the image is still locked by another process after %d attempts (is the VM still running?): %w",
				attempt+1, err)
		}
		d := lockRetryDelays[attempt]
		env.logf("qemu-img: image locked by another process (QEMU still exiting?); retry %d/%d in %s",
			attempt+1, len(lockRetryDelays), d)
		if err := waitRetry(ctx, d); err != nil {
			return err
		}
	}
}

// isLockError recognises qemu-img's image locking failure: 'Failed to get shared "write" lock' when
// it reads, 'Failed to get "write" lock' when it writes.
func isLockError(stderr string) bool {
	return strings.Contains(stderr, `"write" lock`) || strings.Contains(stderr, `"consistent read" lock`)
}

// progressParser reads qemu-img -p output, "    (12.34/100%)" records ended by "\r" (or "\n" at the
// end), and calls fn with each percentage.
type progressParser struct {
	fn      func(pct float64)
	pending []byte
}

func (p *progressParser) Write(b []byte) (int, error) {
	p.pending = append(p.pending, b...)
	for {
		i := bytes.IndexAny(p.pending, "\r\n")
		if i < 0 {
			break
		}
		if pct, ok := parseProgress(string(p.pending[:i])); ok {
			p.fn(pct)
		}
		p.pending = p.pending[i+1:]
	}
	if len(p.pending) > 4096 {
		// Not progress output: do not let it grow.
		p.pending = p.pending[:0]
	}
	return len(b), nil
}

func parseProgress(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "(") || !strings.HasSuffix(s, "/100%)") {
		return 0, false
	}
	pct, err := strconv.ParseFloat(s[1:len(s)-len("/100%)")], 64)
	if err != nil || pct < 0 || pct > 100 {
		return 0, false
	}
	return pct, true
}

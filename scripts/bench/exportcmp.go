package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/export"
)

// zstdFigure compares imgform's zstd with the zstd tool at one level, on the same raw file.
type zstdFigure struct {
	Level              int
	OursTime, CLITime  time.Duration // compression only: imgform's compress phase, the zstd process
	OursSize, CLISize  int64
	OursLoad, CLILoad  load
	OursTotal          time.Duration // the whole export.Export call, with its own flatten of the raw file
	EncoderDescription string
}

// qcowFigure is qemu-img convert -c of the same raw file into a qcow2 with compressed clusters.
type qcowFigure struct {
	Compression string // zlib or zstd
	Time        time.Duration
	Size        int64
	Load        load
}

// exportFigures is figure 4.
type exportFigures struct {
	Layer        string
	RawSize      int64 // apparent: the disk's virtual size
	RawData      int64 // allocated: the data qemu-img wrote, holes left out
	FlattenTime  time.Duration
	Zstd         []zstdFigure
	Qcow         []qcowFigure
	ZstdVersion  string
	QemuImgFlags string
}

// finalLayer returns the qcow2 layer of the step with this key in the store at cacheDir (the cleanup
// step: the image as exported). Lookup only reads.
func finalLayer(cacheDir, key string) (string, error) {
	st, err := state.Open(cacheDir)
	if err != nil {
		return "", err
	}
	k, err := state.ParseKey(key)
	if err != nil {
		return "", err
	}
	obj, ok, err := st.Lookup(k)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no object for key %s in %s", k.Short(), cacheDir)
	}
	return obj.Path(step.LayerFile), nil
}

// compareExport flattens layer (and its backing chain) into one raw file and compresses that same file
// with imgform's export code, with the zstd tool and with qemu-img, one after the other so that they
// do not share the two cores.
func compareExport(ctx context.Context, layer, work string, levels []int, progress io.Writer) (*exportFigures, error) {
	fig := &exportFigures{Layer: layer}
	raw := filepath.Join(work, "flat.raw")
	defer os.Remove(raw)
	fmt.Fprintf(progress, "%s  export: qemu-img convert -O raw %s\n", stamp(), layer)
	start := time.Now()
	if err := command(ctx, "qemu-img", "convert", "-O", "raw", layer, raw); err != nil {
		return nil, err
	}
	fig.FlattenTime = time.Since(start)
	var st syscall.Stat_t
	if err := syscall.Stat(raw, &st); err != nil {
		return nil, err
	}
	fig.RawSize, fig.RawData = st.Size, st.Blocks*512
	if out, err := exec.CommandContext(ctx, "zstd", "--version").Output(); err == nil {
		// "*** Zstandard CLI (64-bit) v1.5.4, by Yann Collet ***" -> "zstd v1.5.4"
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "v") {
				fig.ZstdVersion = "zstd " + strings.TrimSuffix(f, ",")
				break
			}
		}
	}

	for _, level := range levels {
		f := zstdFigure{Level: level, EncoderDescription: export.EncoderLevel(level).String()}
		ours := filepath.Join(work, "ours-"+strconv.Itoa(level)+".raw.zst")
		fmt.Fprintf(progress, "%s  export: imgform zstd level %d\n", stamp(), level)
		m := startLoad()
		res, err := export.Export(ctx, export.Request{Source: raw, Format: export.FormatRaw,
			Compression: export.CompressionZstd, Level: level, Dest: ours, TempDir: work})
		f.OursLoad = m.Stop(runtime.NumCPU())
		if err != nil {
			return nil, err
		}
		f.OursTotal, f.OursSize = res.Duration, res.Size
		for _, p := range res.Phases {
			if p.Name == export.PhaseCompress {
				f.OursTime = p.Duration
			}
		}
		if err := os.Remove(ours); err != nil {
			return nil, err
		}

		cli := filepath.Join(work, "cli-"+strconv.Itoa(level)+".raw.zst")
		fmt.Fprintf(progress, "%s  export: zstd -T0 -%d\n", stamp(), level)
		m = startLoad()
		start := time.Now()
		err = command(ctx, "zstd", "-q", "-f", "-T0", "-"+strconv.Itoa(level), "-o", cli, raw)
		f.CLITime = time.Since(start)
		f.CLILoad = m.Stop(runtime.NumCPU())
		if err != nil {
			return nil, err
		}
		if f.CLISize, err = fileSize(cli); err != nil {
			return nil, err
		}
		if err := os.Remove(cli); err != nil {
			return nil, err
		}
		fig.Zstd = append(fig.Zstd, f)
	}

	fig.QemuImgFlags = "qemu-img convert -f raw -O qcow2 -c -o compat=1.1,compression_type=TYPE"
	for _, ct := range []string{"zlib", "zstd"} {
		out := filepath.Join(work, "c-"+ct+".qcow2")
		fmt.Fprintf(progress, "%s  export: qemu-img convert -c, %s clusters\n", stamp(), ct)
		m := startLoad()
		start := time.Now()
		err := command(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-c", "-o", "compat=1.1,compression_type="+ct, raw, out)
		q := qcowFigure{Compression: ct, Time: time.Since(start), Load: m.Stop(runtime.NumCPU())}
		if err != nil {
			return nil, err
		}
		if q.Size, err = fileSize(out); err != nil {
			return nil, err
		}
		if err := os.Remove(out); err != nil {
			return nil, err
		}
		fig.Qcow = append(fig.Qcow, q)
	}
	return fig, nil
}

// command runs a program and returns its output in the error when it fails.
func command(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return errors.Join(fmt.Errorf("%s %v: %w", name, args, err), errors.New(string(out)))
	}
	return nil
}

package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/klauspost/compress/zstd"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/fsutil"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

// A layer cut while the guest runs keeps the guest's state too (RAM and devices, QEMU's migration stream,
// zstd-compressed), saved while the VM is paused at the very moment of the cut, so that state and layer
// match. A later build that starts from the layer resumes the guest from it instead of booting: no boot, no
// cloud-init, and the steps run in the same running system as in a full build (services that an earlier
// step started, /run, /tmp). The state is part of the layer's object: hashed, verified, pulled, pushed and
// collected with it. It holds the guest's memory, so whatever the layer may hold (the build key, sensitive
// values a provisioner had in memory), it may hold too.
const (
	stateFile     = step.StateFile
	stateInfoFile = "vmstate.json"
	stateFormat   = 1
)

// stateInfo describes a saved state: which machine it fits, for the check before a resume and its message.
type stateInfo struct {
	FormatVersion int `json:"format_version"`
	// Fingerprint is qemu.StateFingerprint of the machine that saved it (see fingerprint).
	Fingerprint string `json:"fingerprint"`
	// Machine says the same for people: QEMU version, machine type, accelerator, CPU, memory.
	Machine string `json:"machine"`
	// Size is the length of the uncompressed stream.
	Size  int64     `json:"size"`
	Saved time.Time `json:"saved"`
}

// savedState is the state stored with a cached layer.
type savedState struct {
	obj  *state.Object
	info stateInfo
}

// loadSavedState reads the saved state's description from a cached layer. It returns nil and "" when the
// layer has no state (the last layer of a session, which ends with a shutdown), nil and the reason when
// the state cannot be used.
func loadSavedState(obj *state.Object) (*savedState, string) {
	if obj == nil {
		return nil, ""
	}
	if _, ok := obj.File(stateFile); !ok {
		return nil, ""
	}
	b, err := os.ReadFile(obj.Path(stateInfoFile))
	if err != nil {
		return nil, fmt.Sprintf("its description: %v", err)
	}
	var info stateInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Sprintf("its description %s: %v", obj.Path(stateInfoFile), err)
	}
	if info.FormatVersion != stateFormat {
		return nil, fmt.Sprintf("it has format %d, this imgform reads %d", info.FormatVersion, stateFormat)
	}
	return &savedState{obj: obj, info: info}, ""
}

// usableState is loadSavedState with a warning, through message, when the layer's state cannot be used.
func usableState(layer *state.Object, image, label string, message func(string)) *savedState {
	st, why := loadSavedState(layer)
	if why != "" && message != nil {
		message(fmt.Sprintf("image %q: the saved VM state of %s cannot be used (%s); booting the layer instead", image, label, why))
	}
	return st
}

// overlayMaker returns a function that makes path an empty overlay of backing, replacing what is there: a
// resumed guest that failed after it ran may have written to the overlay, and the boot after it must not
// see that.
func overlayMaker(path, backing, format string, size, cluster int64) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if err := fsutil.RemoveIfExists(path); err != nil {
			return err
		}
		return qemu.CreateOverlay(ctx, path, backing, format, size, cluster)
	}
}

// describeMachine is stateInfo.Machine for the machine QEMU runs with opts.
func describeMachine(ctx context.Context, m config.Machine, opts qemu.Options) string {
	v, err := qemu.Version(ctx, opts.Binary)
	if err != nil {
		v = "QEMU of unknown version"
	}
	cpu := m.CPU
	if cpu == "" {
		cpu = "default"
	}
	return fmt.Sprintf("%s; machine %s, %s, -cpu %s, %d CPUs, %d MiB, %s network, %s firmware", v, opts.Machine, opts.Accelerator,
		cpu, opts.CPUs, opts.Memory>>20, opts.Network, opts.Firmware)
}

// saveState saves the machine's state into the layer's object; atStop cuts the layer (machine.SaveState).
// A failure removes what was written: the layer is still good, a later build boots it instead of resuming it.
func (s *session) saveState(ctx context.Context, l *layer, atStop func() error) (err error) {
	path, err := l.w.Path(stateFile)
	if err != nil {
		return err
	}
	infoPath, err := l.w.Path(stateInfoFile)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, fsutil.RemoveIfExists(path), fsutil.RemoveIfExists(infoPath))
		}
	}()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	bw := bufio.NewWriterSize(f, 1<<20)
	// The fastest level: the stream is mostly the guest's page cache and code, and the VM waits while it is
	// written. zstd's frame checksum is off: the store hashes the file, and a restore reads it through that.
	enc, err := zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
	if err != nil {
		return err
	}
	// The caches the guest dropped before the cut are free pages with their old bytes until it hands them
	// back (qemu.VM.SettleMemory): that halved the example's states.
	freed, waited, err := s.m.SettleMemory(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	n, fp, err := s.m.SaveState(ctx, enc, atStop)
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return err
	}
	info := stateInfo{FormatVersion: stateFormat, Fingerprint: fp, Machine: s.m.Describe(), Size: n, Saved: time.Now().UTC()}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := l.w.WriteFile(stateInfoFile, append(b, '\n'), 0o644); err != nil {
		return err
	}
	if fi, err := f.Stat(); err == nil {
		s.info(fmt.Sprintf("saved the VM state with %s: %d MiB, %d MiB compressed, in %s, after the guest "+
			"returned %d MiB of free memory in %s", l.step.Label(), n>>20, fi.Size()>>20,
			time.Since(start).Round(time.Millisecond), freed>>20, waited.Round(10*time.Millisecond)))
	}
	return nil
}

// info passes a note on to the job's Info, if it wants notes.
func (s *session) info(text string) {
	if s.job.Info != nil {
		s.job.Info(text)
	}
}

// fits says why a state with info cannot be resumed on q's machine, or nil when it can.
func (q *qemuMachine) fits(info stateInfo) error {
	switch {
	case info.Fingerprint == q.fingerprint:
		return nil
	case info.Machine == q.describe:
		return fmt.Errorf("its VM state was saved with other virtual hardware (%s, but other devices or options, "+
			"as another imgform version sets up)", q.describe)
	}
	return fmt.Errorf("its VM state was saved on another machine (%s); this one is %s", info.Machine, q.describe)
}

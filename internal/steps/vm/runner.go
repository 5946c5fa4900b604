// Package vm runs the disk steps of an image in one QEMU session: it boots the base disk with the seed,
// logs in over SSH with the build key, waits for cloud-init, runs each provisioner and the cleanup, and cuts
// a qcow2 layer after each step while the VM keeps running, so a full build boots once.
package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/engine"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
	"gitlab.com/imgform/imgform/internal/steps/seed"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// Runner implements engine.GuestRunner with QEMU and SSH.
type Runner struct {
	// Resolve picks the accelerator; nil means qemu.ResolveAccelerator (which honours IMGFORM_ACCELERATOR).
	Resolve func(ctx context.Context, want string) (accel, warning string, err error)
}

var _ engine.GuestRunner = (*Runner)(nil)

// layer is the layer of one step, written straight into its store folder.
type layer struct {
	step *engine.StepPlan
	w    *state.Writer
	path string
}

// session is one run of the VM.
type session struct {
	job      *engine.GuestJob
	vm       *qemu.VM
	client   *ssh.Client
	hostKeys []byte
	// machineID is the guest's /etc/machine-id in this session, recorded with each layer so that the test
	// step can check that a new instance does not have it.
	machineID string
	size      int64  // the disk's virtual size, the same in every layer
	active    *layer // the layer the VM writes to now; committed when its step is over
}

// Run boots the VM, runs the steps, and commits each step's layer as soon as the step is over (the VM runs
// on in a new layer), so a failure or a crash later keeps every finished step. The last layer is committed
// once QEMU has exited.
func (r *Runner) Run(ctx context.Context, job *engine.GuestJob) (err error) {
	s := &session{job: job}
	defer func() {
		if s.vm != nil {
			s.vm.Kill()
			<-s.vm.Exited()
		}
		if s.client != nil {
			_ = s.client.Close()
		}
		if s.active != nil {
			// The step that was running did not finish: its layer is not a result.
			err = errors.Join(err, s.active.w.Abort())
		}
	}()
	// The first step starts with the boot: for a user, booting is part of it.
	job.Started(job.Steps[0])
	if err := s.start(ctx, r.resolve); err != nil {
		return fmt.Errorf("%s: %w", job.Steps[0].Label, err)
	}
	for i, sp := range job.Steps {
		if i > 0 {
			job.Started(sp)
		}
		if err := s.runStep(ctx, sp); err != nil {
			return fmt.Errorf("%s: %w", sp.Label, err)
		}
		if i == len(job.Steps)-1 {
			return s.finish(ctx, sp) // the last step's time includes the shutdown its cleanup starts
		}
		if job.Done != nil {
			job.Done(sp)
		}
		if err := s.cut(ctx, job.Steps[i+1]); err != nil {
			return fmt.Errorf("%s: %w", sp.Label, err)
		}
	}
	return nil
}

func (r *Runner) resolve(ctx context.Context, want string) (string, string, error) {
	if r.Resolve != nil {
		return r.Resolve(ctx, want)
	}
	return qemu.ResolveAccelerator(ctx, want)
}

// resolveFunc picks the accelerator for a machine block's wish (Runner.Resolve).
type resolveFunc func(ctx context.Context, want string) (accel, warning string, err error)

// startVM resolves the accelerator (passing its warning on to message) and starts QEMU for machine m on
// disk with the seed ISO, its state in workDir/state; mac empty keeps QEMU's default MAC address.
func startVM(ctx context.Context, resolve resolveFunc, message func(string), m config.Machine, disk, seedISO, workDir, mac string) (*qemu.VM, error) {
	accel, warning, err := resolve(ctx, m.Accelerator)
	if err != nil {
		return nil, err
	}
	if warning != "" && message != nil {
		message(warning)
	}
	stateDir := filepath.Join(workDir, "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return nil, err
	}
	opts := qemu.MachineOptions(m, accel)
	opts.Disk, opts.ExtraDrives, opts.StateDir, opts.MAC = disk, seed.QEMUArgs(seedISO), stateDir, mac
	return qemu.Start(ctx, opts)
}

// start creates the first layer over the base, boots QEMU on it and logs in.
func (s *session) start(ctx context.Context, resolve resolveFunc) error {
	job := s.job
	m := job.Image.Machine
	first := job.Steps[0]
	size := int64(0)
	if first.Kind == engine.KindBoot {
		size = int64(m.DiskSize)
	}
	l, err := s.begin(first)
	if err != nil {
		return err
	}
	s.active = l
	backing, err := filepath.Rel(l.w.Dir(), job.Base.Path)
	if err != nil {
		return err
	}
	if err := qemu.CreateOverlay(ctx, l.path, backing, job.Base.Format, size); err != nil {
		return err
	}
	info, err := qemu.Info(ctx, l.path)
	if err != nil {
		return err
	}
	s.size = info.VirtualSize
	if s.vm, err = startVM(ctx, resolve, job.Message, m, l.path, job.Seed, job.WorkDir, ""); err != nil {
		return err
	}
	return s.login(ctx, first.Kind == engine.KindBoot)
}

// login waits for SSH with the build key, pinning the host key: on a first boot to what cloud-init prints
// on the console, on a resumed build to the keys recorded with the cached layer.
func (s *session) login(ctx context.Context, firstBoot bool) error {
	job := s.job
	key, err := ssh.ParseKey(job.BuildKey)
	if err != nil {
		return fmt.Errorf("build key: %w", err)
	}
	var hk *ssh.HostKeys
	if firstBoot {
		hk = ssh.PinConsole(s.vm.SerialLog())
	} else {
		keys, err := ssh.ParseHostKeys(job.HostKeys)
		if err != nil {
			return fmt.Errorf("recorded host keys: %w", err)
		}
		hk = ssh.PinKeys(keys...)
	}
	bctx, cancel := context.WithTimeout(ctx, job.Image.Machine.BootTimeout)
	defer cancel()
	s.client, err = ssh.Dial(bctx, s.vm.SSHAddr(), job.BuildUser, key, hk.Callback(), ssh.WithHostKeys(hk),
		ssh.WithConsoleTail(func() string { return s.vm.Tail(30) }))
	if err != nil {
		return timeoutHint(err, bctx, "boot_timeout", job.Image.Machine.BootTimeout)
	}
	// cloud-init runs on every boot (per-boot modules); wait for it also when resuming.
	if _, err := ssh.WaitCloudInit(bctx, s.client); err != nil {
		return timeoutHint(err, bctx, "boot_timeout", job.Image.Machine.BootTimeout)
	}
	accepted := hk.Accepted()
	if len(accepted) == 0 {
		return errors.New("no host key was pinned for the guest")
	}
	s.hostKeys = ssh.MarshalHostKeys(accepted)
	if id, code, err := s.client.Output(ctx, "cat /etc/machine-id", ssh.RunOptions{Idempotent: true}); err == nil && code == 0 {
		s.machineID = strings.TrimSpace(string(id))
	}
	return nil
}

func timeoutHint(err error, ctx context.Context, attr string, d time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (machine.%s is %s; raise it for slow hosts, e.g. software emulation)", err, attr, d)
	}
	return err
}

// begin opens the store folder of a step's layer.
func (s *session) begin(sp *engine.StepPlan) (*layer, error) {
	w, err := s.job.Begin(sp)
	if err != nil {
		return nil, err
	}
	path, err := w.Path(engine.LayerFile)
	if err != nil {
		return nil, errors.Join(err, w.Abort())
	}
	return &layer{step: sp, w: w, path: path}, nil
}

// cut ends the active layer: the guest syncs, QEMU switches to a new overlay for the next step, and the
// finished layer is committed to the store while the VM runs on. The new overlay names the finished layer
// by its committed path from the start, so nothing needs rewriting later.
func (s *session) cut(ctx context.Context, next *engine.StepPlan) error {
	done := s.active
	if code, err := s.client.Run(ctx, "sync", ssh.RunOptions{Sudo: true, Idempotent: true}); err != nil || code != 0 {
		return fmt.Errorf("sync before cutting the layer: exit %d: %v", code, err)
	}
	l, err := s.begin(next)
	if err != nil {
		return err
	}
	backing, err := filepath.Rel(l.w.Dir(), done.w.FinalPath(engine.LayerFile))
	if err == nil {
		err = qemu.CreateOverlayUnchecked(ctx, l.path, backing, "qcow2", s.size)
	}
	if err == nil {
		_, err = s.vm.Snapshot(ctx, l.path)
	}
	if err != nil {
		return errors.Join(err, l.w.Abort())
	}
	s.active = l
	// The guest writes to the new layer from here on; if committing the old one fails, the step after it
	// must not go on (its layer would be built on nothing), and the deferred abort in Run throws it away.
	return s.commit(done)
}

// commit publishes a finished layer with the host keys to pin when a later build boots it.
func (s *session) commit(l *layer) error {
	if len(s.hostKeys) > 0 {
		if err := l.w.WriteFile(engine.HostKeysFile, s.hostKeys, 0o644); err != nil {
			return errors.Join(fmt.Errorf("committing the layer: %w", err), l.w.Abort())
		}
	}
	if s.machineID != "" {
		if err := l.w.WriteFile(engine.MachineIDFile, []byte(s.machineID+"\n"), 0o644); err != nil {
			return errors.Join(fmt.Errorf("committing the layer: %w", err), l.w.Abort())
		}
	}
	if _, err := s.job.Commit(l.step, l.w); err != nil {
		return fmt.Errorf("committing the layer: %w", err)
	}
	return nil
}

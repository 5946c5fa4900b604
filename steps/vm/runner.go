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
	"time"

	"gitlab.com/imgform/imgform/engine"
	"gitlab.com/imgform/imgform/steps/qemu"
	"gitlab.com/imgform/imgform/steps/seed"
	"gitlab.com/imgform/imgform/steps/ssh"
)

// Runner implements engine.GuestRunner with QEMU and SSH.
type Runner struct {
	// Resolve picks the accelerator; nil means qemu.ResolveAccelerator (which honours IMGFORM_ACCELERATOR).
	Resolve func(ctx context.Context, want string) (accel, warning string, err error)
}

var _ engine.GuestRunner = (*Runner)(nil)

// layer is a finished layer waiting in the work folder until QEMU has exited, when it moves into the
// store with a relative backing path (see commitLayers).
type layer struct {
	step *engine.StepPlan
	path string
}

// session is one run of the VM.
type session struct {
	job      *engine.GuestJob
	vm       *qemu.VM
	client   *ssh.Client
	hostKeys []byte
	finished []layer
	active   string // the layer the VM writes to now
}

// Run boots the VM, runs the steps, shuts it down and commits the finished layers. On failure the layers
// of the steps that finished are committed all the same, so the next apply resumes after them.
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
		// Commit what finished even after an error; with QEMU gone the files are final.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		err = errors.Join(err, s.commitLayers(cctx))
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
		if job.Done != nil {
			job.Done(sp)
		}
		if i == len(job.Steps)-1 {
			return s.finish(ctx, sp)
		}
		if err := s.cut(ctx, sp, job.Steps[i+1]); err != nil {
			return err
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

// start creates the first layer over the base, boots QEMU on it and logs in.
func (s *session) start(ctx context.Context, resolve func(context.Context, string) (string, string, error)) error {
	job := s.job
	m := job.Image.Machine
	accel, warning, err := resolve(ctx, m.Accelerator)
	if err != nil {
		return err
	}
	if warning != "" && job.Message != nil {
		job.Message(warning)
	}
	first := job.Steps[0]
	s.active = filepath.Join(job.WorkDir, layerName(0))
	size := int64(0)
	if first.Kind == engine.KindBoot {
		size = int64(m.DiskSize)
	}
	if err := qemu.CreateOverlay(ctx, s.active, job.Base.Path, job.Base.Format, size); err != nil {
		return err
	}
	stateDir := filepath.Join(job.WorkDir, "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return err
	}
	opts := qemu.MachineOptions(m, accel)
	opts.Disk = s.active
	opts.ExtraDrives = seed.QEMUArgs(job.Seed)
	opts.StateDir = stateDir
	if s.vm, err = qemu.Start(ctx, opts); err != nil {
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
	return nil
}

func timeoutHint(err error, ctx context.Context, attr string, d time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (machine.%s is %s; raise it for slow hosts, e.g. software emulation)", err, attr, d)
	}
	return err
}

// cut ends a step: the guest syncs, QEMU switches to a new overlay for the next step, and the layer the
// step wrote is finished.
func (s *session) cut(ctx context.Context, done, next *engine.StepPlan) error {
	if code, err := s.client.Run(ctx, "sync", ssh.RunOptions{Sudo: true, Idempotent: true}); err != nil || code != 0 {
		return fmt.Errorf("sync before cutting the layer of %s: exit %d: %v", done.Label, code, err)
	}
	nextPath := filepath.Join(s.job.WorkDir, layerName(len(s.finished)+1))
	finished, err := s.vm.Snapshot(ctx, nextPath)
	if err != nil {
		return err
	}
	s.finished = append(s.finished, layer{step: done, path: finished})
	s.active = nextPath
	return nil
}

func layerName(i int) string { return fmt.Sprintf("layer-%02d.qcow2", i) }

// commitLayers moves the finished layers into the store in order, each with a backing path relative to
// its final place (QEMU wrote absolute work-folder paths).
func (s *session) commitLayers(ctx context.Context) error {
	job := s.job
	prev := job.Base
	for _, l := range s.finished {
		w, err := job.Begin(l.step)
		if err != nil {
			return err
		}
		dest := filepath.Join(w.Dir(), engine.LayerFile)
		rel, err := filepath.Rel(w.Dir(), prev.Path)
		if err == nil {
			err = os.Rename(l.path, dest)
		}
		if err == nil {
			err = qemu.Rebase(ctx, dest, rel, prev.Format)
		}
		if err == nil && len(s.hostKeys) > 0 {
			err = w.WriteFile(engine.HostKeysFile, s.hostKeys, 0o644)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("committing the layer of %s: %w", l.step.Label, err), w.Abort())
		}
		if prev, err = job.Commit(l.step, w); err != nil {
			return err
		}
	}
	s.finished = nil
	return nil
}

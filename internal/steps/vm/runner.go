// Package vm runs VMs for the step kinds: the guest session of an image (it boots the base disk with the
// seed, logs in over SSH with the build key, waits for cloud-init, runs each guest step and cuts a qcow2
// layer after each one while the VM keeps running, so a full build boots once) and a new instance of an
// image for its test. It implements step.Machines with QEMU (internal/steps/qemu) and SSH
// (internal/steps/ssh); which guest steps exist is the kinds' business.
package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
	"gitlab.com/imgform/imgform/internal/steps/seed"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// Runner implements step.Machines with QEMU and SSH.
type Runner struct {
	// Resolve picks the accelerator; nil means qemu.ResolveAccelerator (which honours IMGFORM_ACCELERATOR).
	Resolve func(ctx context.Context, want string) (accel, warning string, err error)

	// boot starts the session's machine; nil means bootQEMU. Tests put a fake here.
	boot bootFunc
}

var _ step.Machines = (*Runner)(nil)

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
	opts, err := vmOptions(ctx, resolve, message, m, disk, seedISO, workDir, mac)
	if err != nil {
		return nil, err
	}
	return startQEMU(ctx, opts)
}

// startQEMU creates the state folder and starts QEMU.
func startQEMU(ctx context.Context, opts qemu.Options) (*qemu.VM, error) {
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, err
	}
	return qemu.Start(ctx, opts)
}

// vmOptions are the QEMU options startVM uses; startQEMU creates their state folder.
func vmOptions(ctx context.Context, resolve resolveFunc, message func(string), m config.Machine, disk, seedISO, workDir, mac string) (qemu.Options, error) {
	accel, warning, err := resolve(ctx, m.Accelerator)
	if err != nil {
		return qemu.Options{}, err
	}
	if warning != "" && message != nil {
		message(warning)
	}
	stateDir := filepath.Join(workDir, "state")
	network, warning, err := qemu.ResolveNetwork(m.HostLoopback)
	if err != nil {
		return qemu.Options{}, err
	}
	if warning != "" && message != nil {
		message(warning)
	}
	opts := qemu.MachineOptions(m, accel)
	opts.Network = network
	opts.Disk, opts.ExtraDrives, opts.StateDir, opts.MAC = disk, seed.QEMUArgs(seedISO), stateDir, mac
	return opts, nil
}

// fingerprint is qemu.StateFingerprint of opts with the seed at a fixed path: which seed it is, the layer's
// key already says.
func fingerprint(ctx context.Context, opts qemu.Options) (string, error) {
	opts.ExtraDrives = seed.QEMUArgs("/seed.iso")
	return qemu.StateFingerprint(ctx, opts)
}

// machine is the running guest of a session as the session drives it: QEMU with an SSH login (qemuMachine),
// or a fake in the tests.
type machine interface {
	step.Shell
	// Snapshot switches the VM's disk to the overlay at path, which backs onto the current one.
	Snapshot(ctx context.Context, path string) error
	// Stop ends the VM with the guest's data on disk: it waits up to timeout for the guest to power off when
	// its last step does so (poweredOff), and shuts it down otherwise.
	Stop(ctx context.Context, timeout time.Duration, powersOff bool) error
	// Kill stops QEMU at once and waits for it; safe after Stop.
	Kill()
	// Pause stops the guest's CPUs; Continue runs them again. SaveState writes the machine's state (RAM and
	// devices) to w, runs atStop while the guest stands still just before the end (qemu.VM.SaveState), and
	// says what machine the state fits (stateInfo.Fingerprint); the guest runs on afterwards.
	Pause(ctx context.Context) error
	Continue(ctx context.Context) error
	SaveState(ctx context.Context, w io.Writer, atStop func() error) (n int64, fingerprint string, err error)
	// SettleMemory waits until the guest has handed back the memory it freed (qemu.VM.SettleMemory), so that
	// a state saved next holds its free pages as zero pages; it returns how much and how long it took.
	SettleMemory(ctx context.Context) (freed int64, waited time.Duration, err error)
	// Describe names the machine for people (stateInfo.Machine).
	Describe() string
	// Interactive connects a login shell on a pseudo-terminal to t (imgform shell).
	Interactive(ctx context.Context, t ssh.Terminal) (int, error)
	// Login writes what an ssh client needs to log in (the build key, the pinned host keys) into dir and
	// returns the command line.
	Login(dir string) (string, error)
	// HostKeys are the SSH host keys the session pinned (ssh.MarshalHostKeys); MachineID the guest's
	// /etc/machine-id ("" when unknown).
	HostKeys() []byte
	MachineID() string
}

// bootSpec is what starting a session's machine needs.
type bootSpec struct {
	Job  *step.SessionJob
	Disk string // the first layer, over the base
	Seed string // the cidata ISO
	// FirstBoot: pin the host keys cloud-init prints on the console; otherwise pin HostKeys.
	FirstBoot bool
	BuildKey  []byte
	HostKeys  []byte
	// State, when set, is the saved state of the layer below Disk: the machine resumes it instead of
	// booting, when it fits. ResetDisk makes Disk a new empty overlay again, for a boot after a failed resume.
	State     *savedState
	ResetDisk func(ctx context.Context) error
	// Layer names the cached layer below Disk for messages, such as `provision "motd"`.
	Layer string
}

type bootFunc func(ctx context.Context, spec bootSpec) (machine, error)

// layer is the layer of one step, written straight into its store folder.
type layer struct {
	step *step.Step
	w    *state.Writer
	path string
}

// session is one run of the VM.
type session struct {
	job      *step.SessionJob
	m        machine
	buildKey []byte
	size     int64  // the disk's virtual size, the same in every layer
	active   *layer // the layer the VM writes to now; committed when its step is over
	// tainted is set once a step of the session handled a sensitive value: no VM state is saved from then
	// on (cutAndSave), since the guest's memory may still hold the value.
	tainted bool
}

// RunSession boots the VM, runs the steps, and commits each step's layer as soon as the step is over (the
// VM runs on in a new layer), so a failure or a crash later keeps every finished step. The last layer is
// committed once QEMU has exited.
func (r *Runner) RunSession(ctx context.Context, job *step.SessionJob) (err error) {
	if len(job.Steps) == 0 {
		return nil
	}
	s := &session{job: job}
	defer func() {
		if s.m != nil {
			s.m.Kill()
		}
		if s.active != nil {
			// The step that was running did not finish: its layer is not a result.
			err = errors.Join(err, s.active.w.Abort())
		}
	}()
	boot := r.boot
	if boot == nil {
		boot = r.bootQEMU
	}
	// The first step starts with the boot: for a user, booting is part of it.
	job.Started(job.Steps[0])
	if err := s.start(ctx, boot); err != nil {
		return fmt.Errorf("%s: %w", job.Steps[0].Label(), err)
	}
	for i, st := range job.Steps {
		if i > 0 {
			job.Started(st)
		}
		if err := s.run(ctx, st); err != nil {
			err = fmt.Errorf("%s: %w", st.Label(), err)
			s.keep(ctx, st, err)
			return err
		}
		if i == len(job.Steps)-1 {
			if err := s.finish(ctx, st); err != nil {
				return fmt.Errorf("%s: %w", st.Label(), err)
			}
			return nil
		}
		job.Done(st)
		if err := s.cut(ctx, job.Steps[i+1]); err != nil {
			return fmt.Errorf("%s: %w", st.Label(), err)
		}
	}
	return nil
}

// keep hands a failed session's running VM to job.KeepOnError, if set, with a way to log in.
func (s *session) keep(ctx context.Context, failed *step.Step, err error) {
	if s.job.KeepOnError == nil || ctx.Err() != nil {
		return
	}
	login, lerr := s.m.Login(filepath.Join(s.job.WorkDir, "login"))
	if lerr != nil {
		login = fmt.Sprintf("(no login: %v)", lerr)
	}
	s.job.KeepOnError(ctx, failed, err, login)
}

// start reads the build key and host keys, creates the first layer over the base and boots on it.
func (s *session) start(ctx context.Context, boot bootFunc) error {
	job := s.job
	first := job.Steps[0]
	b, firstBoot := first.Kind.(step.Booter)
	firstBoot = firstBoot && b.StartsChain()
	// The seed is attached on every boot, also when resuming, so that cloud-init sees the same instance.
	seedObj := seedObject(job.Uses)
	if seedObj == nil {
		return errors.New("no seed among the results the session uses")
	}
	spec := bootSpec{Job: job, FirstBoot: firstBoot, Seed: seedObj.Path(step.SeedFile)}
	// A new chain logs in with the seed's key; a resumed one with the key its layers were built with.
	keyFrom := job.BaseObject
	if firstBoot {
		keyFrom = seedObj
	}
	var err error
	if s.buildKey, err = os.ReadFile(keyFrom.Path(step.BuildKeyFile)); err != nil {
		return fmt.Errorf("the build key of image %q: %w", job.Image.Name, err)
	}
	spec.BuildKey = s.buildKey
	if !firstBoot {
		if spec.HostKeys, err = os.ReadFile(job.BaseObject.Path(step.HostKeysFile)); err != nil {
			return fmt.Errorf("the cached layer %s has no recorded host keys to pin (%w); remove it with imgform cache verify -remove or gc and apply again", first.Parent.Addr.ID(), err)
		}
	}
	// A new chain's first layer takes the first boot's large writes; a layer on a booted chain the small
	// scattered ones qemu.LayerClusters is for.
	size, cluster := int64(0), int64(qemu.LayerClusters)
	if firstBoot {
		size, cluster = int64(job.Image.Machine.DiskSize), 0
	}
	// Nothing of the chain may name a file outside the store: QEMU would read it into the image.
	if err := qemu.CheckChainWithin(job.Base.Path, job.Root); err != nil {
		return fmt.Errorf("the disk image %q builds on: %w", job.Image.Name, err)
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
	if err := qemu.CreateOverlay(ctx, l.path, backing, job.Base.Format, size, cluster); err != nil {
		return err
	}
	info, err := qemu.Info(ctx, l.path)
	if err != nil {
		return err
	}
	s.size = info.VirtualSize
	spec.Disk = l.path
	if !firstBoot {
		spec.Layer = first.Parent.Label()
		spec.State = usableState(job.BaseObject, job.Image.Name, spec.Layer, job.Message)
		spec.ResetDisk = overlayMaker(l.path, backing, job.Base.Format, size, cluster)
	}
	s.m, err = boot(ctx, spec)
	return err
}

// seedObject is the object among uses that holds the seed ISO.
func seedObject(uses []*state.Object) *state.Object {
	for _, o := range uses {
		for _, f := range o.Files {
			if f.Name == step.SeedFile {
				return o
			}
		}
	}
	return nil
}

// run does the work of one step in the running guest.
func (s *session) run(ctx context.Context, st *step.Step) error {
	gk, ok := st.Kind.(step.GuestKind)
	if !ok {
		return fmt.Errorf("step kind %q does not run in the guest", st.Addr.Kind)
	}
	return gk.RunGuest(ctx, &step.GuestEnv{
		Shell: s.m, ConfigDir: s.job.ConfigDir, BuildUser: step.BuildUserName,
		Output: func(line string) { s.job.Output(st, line) }, Redact: s.job.Redact, Shared: s.job.Shared,
		Keep: func(name string) (string, error) {
			if s.active == nil || s.active.step != st {
				return "", fmt.Errorf("no layer of %s is open to keep %s in", st.Label(), name)
			}
			return s.active.w.Path(name)
		},
	}, st)
}

// begin opens the store folder of a step's layer, with the build key the layer is made with.
func (s *session) begin(st *step.Step) (*layer, error) {
	w, err := s.job.Begin(st)
	if err != nil {
		return nil, err
	}
	if err := w.WriteFile(step.BuildKeyFile, s.buildKey, 0o600); err != nil {
		return nil, errors.Join(err, w.Abort())
	}
	path, err := w.Path(step.LayerFile)
	if err != nil {
		return nil, errors.Join(err, w.Abort())
	}
	return &layer{step: st, w: w, path: path}, nil
}

// cut ends the active layer: the guest syncs, QEMU switches to a new overlay for the next step, and the
// finished layer is committed to the store while the VM runs on. The new overlay names the finished layer
// by its committed path from the start, so nothing needs rewriting later.
//
// The VM's state is saved with the finished layer (state.go): the guest drops its clean page cache (a
// smaller state; it reads back what it needs), and the snapshot happens while QEMU holds the guest still
// during the save, so that state and layer match; then it runs on. A failed save is a warning: the layer
// is good, a later build boots it instead of resuming it.
func (s *session) cut(ctx context.Context, next *step.Step) error {
	done := s.active
	if err := s.syncAndDropCaches(ctx); err != nil {
		return fmt.Errorf("sync before cutting the layer: %w", err)
	}
	l, err := s.begin(next)
	if err != nil {
		return err
	}
	backing, err := filepath.Rel(l.w.Dir(), done.w.FinalPath(step.LayerFile))
	if err == nil {
		err = qemu.CreateOverlayUnchecked(ctx, l.path, backing, "qcow2", s.size, qemu.LayerClusters)
	}
	if err == nil {
		err = s.cutAndSave(ctx, done, l)
	}
	if err != nil {
		return errors.Join(err, l.w.Abort())
	}
	s.active = l
	// The guest writes to the new layer from here on; if committing the old one fails, the step after it
	// must not go on (its layer would be built on nothing), and the deferred abort in RunSession throws the
	// new one away.
	return s.commit(ctx, done)
}

// cutAndSave switches the VM to the overlay of l while saving its state with done. When the save fails
// before the guest was stopped for the snapshot, the layer is cut without a state.
func (s *session) cutAndSave(ctx context.Context, done, l *layer) error {
	if done.step.Sensitive && !s.tainted {
		s.tainted = true
		s.job.Message(fmt.Sprintf("%s handled a sensitive value, which the guest's memory may still hold: no VM state "+
			"is saved from it on in this session (a build that starts from these layers boots them)", done.step.Label()))
	}
	if s.tainted {
		if err := s.m.Pause(ctx); err != nil {
			return err
		}
		return errors.Join(s.m.Snapshot(ctx, l.path), s.m.Continue(ctx))
	}
	var snapped bool
	var snapErr error
	serr := s.saveState(ctx, done, func() error {
		snapErr = s.m.Snapshot(ctx, l.path)
		snapped = snapErr == nil
		return snapErr
	})
	if snapErr != nil {
		return snapErr
	}
	if serr != nil {
		s.job.Message(fmt.Sprintf("%s: the VM state was not saved with the layer (%v); a build that starts "+
			"from it will boot it", done.step.Label(), serr))
	}
	if snapped {
		return nil
	}
	if err := s.m.Pause(ctx); err != nil {
		return err
	}
	return errors.Join(s.m.Snapshot(ctx, l.path), s.m.Continue(ctx))
}

// dropCaches syncs, drops the guest's clean page cache, dentries and inodes (the larger part of its memory
// after package installs; they cost only reads later) and compacts its free memory: the guest hands free
// memory back in blocks of 2 MiB (free page reporting, qemu.VM.SettleMemory), and what the caches leave
// free is scattered in smaller pieces until compacted. A kernel without compaction skips that part.
const dropCaches = "sync && echo 3 > /proc/sys/vm/drop_caches && { echo 1 > /proc/sys/vm/compact_memory || true; } 2>/dev/null"

// syncAndDropCaches runs dropCaches before the guest's state is saved.
func (s *session) syncAndDropCaches(ctx context.Context) error {
	code, err := s.m.Run(ctx, dropCaches, sshRun(true))
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d", code)
	}
	return err
}

func (s *session) sync(ctx context.Context) error {
	code, err := s.m.Run(ctx, "sync", sshRun(true))
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d", code)
	}
	return err
}

// finish ends the session after the last step: wait for the guest to power off (or shut it down), then
// commit the active layer, which is final once QEMU has exited.
func (s *session) finish(ctx context.Context, last *step.Step) error {
	po, ok := last.Kind.(step.PowerOffer)
	powersOff := ok && po.PowersOff()
	if !powersOff {
		if err := s.sync(ctx); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	if err := s.m.Stop(ctx, s.job.Image.Machine.ShutdownTimeout, powersOff); err != nil {
		return fmt.Errorf("shutting down the VM: %w", err)
	}
	s.job.Done(last)
	l := s.active
	s.active = nil
	return s.commit(ctx, l)
}

// compressFrom is the layer size from which commit compresses a layer: below it, qemu-img's start costs
// more than the bytes it saves.
const compressFrom = 1 << 20

// commit publishes a finished layer with the host keys to pin when a later build boots it and the machine-id
// the test step compares a new instance's with. A layer of compressFrom bytes or more is compressed first
// (qemu.CompressLayer); where that fails, the layer is kept as it is, with a warning.
func (s *session) commit(ctx context.Context, l *layer) error {
	if fi, err := os.Stat(l.path); err == nil && fi.Size() >= compressFrom {
		if err := qemu.CompressLayer(ctx, l.path); err != nil {
			s.job.Message(fmt.Sprintf("%s: the layer is stored uncompressed: %v", l.step.Label(), err))
		}
	}
	if hk := s.m.HostKeys(); len(hk) > 0 {
		if err := l.w.WriteFile(step.HostKeysFile, hk, 0o644); err != nil {
			return errors.Join(fmt.Errorf("committing the layer: %w", err), l.w.Abort())
		}
	}
	if id := s.m.MachineID(); id != "" {
		if err := l.w.WriteFile(step.MachineIDFile, []byte(id+"\n"), 0o644); err != nil {
			return errors.Join(fmt.Errorf("committing the layer: %w", err), l.w.Abort())
		}
	}
	if err := s.job.Commit(l.step, l.w); err != nil {
		// Abort is a no-op once the writer committed; it frees a writer the callback never committed.
		return errors.Join(fmt.Errorf("committing the layer: %w", err), l.w.Abort())
	}
	return nil
}

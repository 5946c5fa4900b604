package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// resumeLoginTimeout bounds the wait for SSH in a resumed guest. resumeAttempt bounds one login attempt:
// a resumed guest's sshd answers at once, but an attempt whose TCP connection the network set up before the
// guest ran can hang until it times out; a retry after it gets through.
const (
	resumeLoginTimeout = 2 * time.Minute
	resumeAttempt      = 20 * time.Second
)

// resumeQEMU starts QEMU on spec.Disk with the saved state of the layer below it and logs in, instead of a
// boot. The state must fit the machine exactly (the same fingerprint); its bytes are checked against the
// store's digest before the guest runs. A resumed guest then gets what a restore cannot give it: the time
// (its clock stood still since the save) and a new SSH session (the old one's TCP connection is gone, the
// host key is the one pinned with the layer). Its network is new too: the user-mode network or passt starts
// fresh, the guest's address lease stays valid. Any error leaves nothing running; the caller boots instead.
func (r *Runner) resumeQEMU(ctx context.Context, spec bootSpec) (machine, error) {
	job := spec.Job
	m := job.Image.Machine
	key, err := ssh.ParseKey(spec.BuildKey)
	if err != nil {
		return nil, fmt.Errorf("build key: %w", err)
	}
	keys, err := ssh.ParseHostKeys(spec.HostKeys)
	if err != nil {
		return nil, fmt.Errorf("recorded host keys: %w", err)
	}
	hk := ssh.PinKeys(keys...)
	qm, err := r.newMachine(ctx, m, job.Message, spec.Disk, spec.Seed, job.WorkDir)
	if err != nil {
		return nil, err
	}
	if err := qm.fits(spec.State.info); err != nil {
		return nil, err
	}
	saved, err := spec.State.obj.Open(stateFile)
	if err != nil {
		return nil, err
	}
	defer saved.Close()
	dec, err := zstd.NewReader(bufio.NewReaderSize(saved, 1<<20), zstd.WithDecoderConcurrency(0))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	qm.opts.Incoming = pr
	if qm.vm, err = startQEMU(ctx, qm.opts); err != nil {
		_ = pw.Close()
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			qm.Kill()
		}
	}()
	if err := qm.vm.Restore(ctx, pw, dec); err != nil {
		return nil, err
	}
	if err := qm.vm.Continue(ctx); err != nil {
		return nil, err
	}
	// A resumed guest answers at once (seconds under TCG); one that does not within resumeLoginTimeout is
	// broken, and a boot is the better use of the time.
	bctx, cancel := context.WithTimeout(ctx, min(m.BootTimeout, resumeLoginTimeout))
	defer cancel()
	qm.client, err = ssh.Dial(bctx, qm.vm.SSHAddr(), step.BuildUserName, key, hk.Callback(), ssh.WithHostKeys(hk),
		ssh.WithConsoleTail(func() string { return qm.vm.Tail(30) }), ssh.WithRetry(resumeAttempt, 100*time.Millisecond, 250*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("log in to the resumed guest: %w", err)
	}
	if err := setClock(ctx, qm.client); err != nil {
		return nil, err
	}
	qm.hostKeys, qm.buildKey = spec.HostKeys, spec.BuildKey
	qm.readMachineID(ctx)
	if job.Info != nil {
		job.Info(fmt.Sprintf("image %q: resumed the VM saved with %s (%s ago) in %s instead of booting it", job.Image.Name,
			spec.Layer, time.Since(spec.State.info.Saved).Round(time.Second), time.Since(start).Round(100*time.Millisecond)))
	}
	ok = true
	return qm, nil
}

// setClock sets the resumed guest's clock to the host's: it stood still from the save to the resume, and a
// step that checks certificates, compares timestamps (make, apt) or logs times must see the real time.
func setClock(ctx context.Context, c *ssh.Client) error {
	now := time.Now().UTC()
	cmd := fmt.Sprintf("date -u -s @%d.%09d >/dev/null", now.Unix(), now.Nanosecond())
	code, err := c.Run(ctx, cmd, sshRun(true))
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d", code)
	}
	if err != nil {
		return errors.Join(errors.New("set the resumed guest's clock"), err)
	}
	return nil
}

var _ step.Resumer = (*Runner)(nil)

// WillResume says whether a session that starts from layer will resume its saved state, for the plan. It
// makes the checks of resumeQEMU that need no VM: a readable state description and the fingerprint.
func (r *Runner) WillResume(ctx context.Context, img *config.Image, layer *state.Object) (bool, string) {
	st, why := loadSavedState(layer)
	if st == nil {
		if why == "" {
			return false, "the layer has no saved VM state (the last layer of a build is shut down)"
		}
		return false, "its saved VM state cannot be used: " + why
	}
	// The files do not matter: the fingerprint leaves them out.
	qm, err := r.newMachine(ctx, img.Machine, nil, "/disk", "/seed.iso", "/work")
	if err == nil {
		err = qm.fits(st.info)
	}
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}

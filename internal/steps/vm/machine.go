package vm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// qemuMachine is a session's machine: QEMU, logged in over SSH as the build user.
type qemuMachine struct {
	vm          *qemu.VM
	opts        qemu.Options // what vm is (or will be) started with
	describe    string       // describeMachine of opts
	fingerprint string       // of opts, for the states it saves and resumes (stateInfo.Fingerprint)
	client      *ssh.Client
	buildKey    []byte // the private key the client logs in with (Login)
	hostKeys    []byte
	machineID   string
}

var _ machine = (*qemuMachine)(nil)

func sshRun(sudo bool) ssh.RunOptions { return ssh.RunOptions{Sudo: sudo, Idempotent: true} }

// bootQEMU starts QEMU on the first layer and logs in with the build key, pinning the host key: on a first
// boot to what cloud-init prints on the console, on a resumed build to the keys recorded with the cached
// layer. It waits for cloud-init, which runs on every boot (per-boot modules).
func (r *Runner) bootQEMU(ctx context.Context, spec bootSpec) (machine, error) {
	job := spec.Job
	m := job.Image.Machine
	key, err := ssh.ParseKey(spec.BuildKey)
	if err != nil {
		return nil, fmt.Errorf("build key: %w", err)
	}
	var hk *ssh.HostKeys
	if !spec.FirstBoot {
		keys, err := ssh.ParseHostKeys(spec.HostKeys)
		if err != nil {
			return nil, fmt.Errorf("recorded host keys: %w", err)
		}
		hk = ssh.PinKeys(keys...)
	}
	if spec.State != nil {
		qm, err := r.resumeQEMU(ctx, spec)
		if err == nil {
			return qm, nil
		}
		job.Message(fmt.Sprintf("image %q: booting the cached layer of %s instead of resuming its saved VM state: %v",
			job.Image.Name, spec.Layer, err))
		if err := spec.ResetDisk(ctx); err != nil {
			return nil, err
		}
	}
	qm, err := r.newMachine(ctx, m, job.Message, spec.Disk, spec.Seed, job.WorkDir)
	if err != nil {
		return nil, err
	}
	if qm.vm, err = startQEMU(ctx, qm.opts); err != nil {
		return nil, err
	}
	if spec.FirstBoot {
		hk = ssh.PinConsole(qm.vm.SerialLog())
	}
	bctx, cancel := context.WithTimeout(ctx, m.BootTimeout)
	defer cancel()
	qm.client, err = ssh.Dial(bctx, qm.vm.SSHAddr(), step.BuildUserName, key, hk.Callback(), ssh.WithHostKeys(hk),
		ssh.WithConsoleTail(func() string { return qm.vm.Tail(30) }))
	if err == nil {
		_, err = ssh.WaitCloudInit(bctx, qm.client)
	}
	if err != nil {
		qm.Kill()
		return nil, timeoutHint(err, bctx, "boot_timeout", m.BootTimeout)
	}
	accepted := hk.Accepted()
	if len(accepted) == 0 {
		qm.Kill()
		return nil, errors.New("no host key was pinned for the guest")
	}
	qm.hostKeys = ssh.MarshalHostKeys(accepted)
	qm.buildKey = spec.BuildKey
	qm.readMachineID(ctx)
	return qm, nil
}

// newMachine is a session's machine for m on disk, not started yet: its QEMU options, description and
// fingerprint.
func (r *Runner) newMachine(ctx context.Context, m config.Machine, message func(string), disk, seedISO, workDir string) (*qemuMachine, error) {
	opts, err := vmOptions(ctx, r.resolve, message, m, disk, seedISO, workDir, "")
	if err != nil {
		return nil, err
	}
	fp, err := fingerprint(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &qemuMachine{opts: opts, describe: describeMachine(ctx, m, opts), fingerprint: fp}, nil
}

func (q *qemuMachine) readMachineID(ctx context.Context) {
	if id, code, err := q.client.Output(ctx, "cat /etc/machine-id", ssh.RunOptions{Idempotent: true}); err == nil && code == 0 {
		q.machineID = strings.TrimSpace(string(id))
	}
}

func timeoutHint(err error, ctx context.Context, attr string, d time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (machine.%s is %s; raise it for slow hosts, e.g. software emulation)", err, attr, d)
	}
	return err
}

func (q *qemuMachine) Run(ctx context.Context, cmd string, opts ssh.RunOptions) (int, error) {
	return q.client.Run(ctx, cmd, opts)
}

func (q *qemuMachine) Upload(ctx context.Context, r io.Reader, dest string, opts ssh.UploadOptions) error {
	return q.client.Upload(ctx, r, dest, opts)
}

func (q *qemuMachine) Snapshot(ctx context.Context, path string) error {
	_, err := q.vm.Snapshot(ctx, path)
	return err
}

func (q *qemuMachine) Stop(ctx context.Context, timeout time.Duration, powersOff bool) error {
	if powersOff {
		select {
		case <-q.vm.Exited():
		case <-time.After(timeout):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	q.closeClient()
	_, err := q.vm.Shutdown(ctx, timeout)
	return err
}

func (q *qemuMachine) closeClient() {
	if q.client != nil {
		_ = q.client.Close()
		q.client = nil
	}
}

func (q *qemuMachine) Kill() {
	if q.vm != nil {
		q.vm.Kill()
		<-q.vm.Exited()
	}
	q.closeClient()
}

func (q *qemuMachine) HostKeys() []byte  { return q.hostKeys }
func (q *qemuMachine) MachineID() string { return q.machineID }

func (q *qemuMachine) Pause(ctx context.Context) error    { return q.vm.Pause(ctx) }
func (q *qemuMachine) Continue(ctx context.Context) error { return q.vm.Continue(ctx) }
func (q *qemuMachine) Describe() string                   { return q.describe }

func (q *qemuMachine) SaveState(ctx context.Context, w io.Writer, atStop func() error) (int64, string, error) {
	n, err := q.vm.SaveState(ctx, w, atStop)
	return n, q.fingerprint, err
}

func (q *qemuMachine) SettleMemory(ctx context.Context) (int64, time.Duration, error) {
	return q.vm.SettleMemory(ctx)
}

func (q *qemuMachine) Interactive(ctx context.Context, t ssh.Terminal) (int, error) {
	return q.client.Interactive(ctx, t)
}

// Login writes the build key and the pinned host keys as an ssh client reads them and returns the command
// that logs in with them.
func (q *qemuMachine) Login(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	key := filepath.Join(dir, "build_key")
	if err := os.WriteFile(key, q.buildKey, 0o600); err != nil {
		return "", err
	}
	known := filepath.Join(dir, "known_hosts")
	keys, err := ssh.ParseHostKeys(q.hostKeys)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(known, ssh.KnownHosts(fmt.Sprintf("[127.0.0.1]:%d", q.vm.SSHPort()), keys), 0o600); err != nil {
		return "", err
	}
	return fmt.Sprintf("ssh -i %s -o UserKnownHostsFile=%s -o IdentitiesOnly=yes -p %d %s@127.0.0.1", key, known,
		q.vm.SSHPort(), step.BuildUserName), nil
}

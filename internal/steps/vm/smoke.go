package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
	"gitlab.com/imgform/imgform/internal/steps/seed"
	"gitlab.com/imgform/imgform/internal/steps/smoke"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// testInstance is one boot of an image's final disk as a new instance.
type testInstance struct {
	job        *step.TestJob
	vm         *qemu.VM
	client     *ssh.Client
	hk         *ssh.HostKeys
	instanceID string
	report     *step.TestReport
}

// Test boots the job's disk through a throwaway overlay with a fresh seed (a new instance-id, a throwaway
// key for a user that exists only in that seed, a new MAC address), logs in, and runs the built-in checks
// and the image's test blocks. Every check runs even after one fails, so one apply shows everything that is
// wrong. The VM is killed at the end: nothing of it is kept. The error names the failed checks.
func (r *Runner) Test(ctx context.Context, job *step.TestJob) (*step.TestReport, error) {
	t := &testInstance{job: job, report: &step.TestReport{}}
	defer func() {
		if t.client != nil {
			_ = t.client.Close()
		}
		if t.vm != nil {
			t.vm.Kill()
			<-t.vm.Exited()
		}
	}()
	start := time.Now()
	if err := t.boot(ctx, r.resolve); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		t.record(smoke.CheckBoot, step.CheckFailed, err.Error(), start)
		return t.report, t.failure()
	}
	t.record(smoke.CheckBoot, step.CheckPassed, "", start)
	t.runChecks(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return t.report, t.failure()
}

// boot starts the instance and logs in as the test user with a throwaway key.
func (t *testInstance) boot(ctx context.Context, resolve resolveFunc) error {
	job := t.job
	m := job.Image.Machine
	key, err := ssh.GenerateKey()
	if err != nil {
		return err
	}
	if t.instanceID, err = smoke.NewInstanceID(); err != nil {
		return err
	}
	mac, err := smoke.NewMAC()
	if err != nil {
		return err
	}
	md, err := seed.MetaData(t.instanceID, seed.HostnameFor(job.Image.Name))
	if err != nil {
		return err
	}
	iso := filepath.Join(job.WorkDir, "seed.iso")
	if err := seed.Build(ctx, seed.Files{UserData: smoke.UserData(key.AuthorizedKey()), MetaData: md}, iso); err != nil {
		return err
	}
	overlay := filepath.Join(job.WorkDir, "instance.qcow2")
	if err := qemu.CreateOverlay(ctx, overlay, job.Disk.Path, job.Disk.Format, 0, 0); err != nil {
		return err
	}
	if t.vm, err = startVM(ctx, resolve, job.Message, m, overlay, iso, job.WorkDir, mac); err != nil {
		return err
	}
	job.Output(fmt.Sprintf("booting a new instance (instance-id %s, MAC %s)", t.instanceID, mac))
	// The new host keys are pinned from the console, where cloud-init prints them, as on a build's first boot.
	t.hk = ssh.PinConsole(t.vm.SerialLog())
	bctx, cancel := context.WithTimeout(ctx, m.BootTimeout)
	defer cancel()
	t.client, err = ssh.Dial(bctx, t.vm.SSHAddr(), smoke.TestUser, key, t.hk.Callback(), ssh.WithHostKeys(t.hk),
		ssh.WithConsoleTail(func() string { return t.vm.Tail(40) }))
	if err != nil {
		return fmt.Errorf("no SSH login into the new instance: %w", timeoutHint(err, bctx, "boot_timeout", m.BootTimeout))
	}
	return nil
}

// runChecks runs the built-in checks, then the test blocks.
func (t *testInstance) runChecks(ctx context.Context) {
	job := t.job
	img := job.Image
	buildKey, err := ssh.ParseKey(job.BuildKey)
	buildPub := ""
	if err == nil {
		buildPub = buildKey.AuthorizedKey()
	}
	env := smoke.Env(img, t.instanceID, job.BuildMachineID, job.BuildUser, buildPub)
	for _, c := range smoke.Checks(img) {
		start := time.Now()
		if c.Skip != "" {
			t.record(c.Name, step.CheckSkipped, c.Skip, start)
			continue
		}
		var status, detail string
		switch c.Name {
		case smoke.CheckCloudInit:
			status, detail = t.cloudInit(ctx, c.Script, env)
		case smoke.CheckSSHHostKeys:
			status, detail = t.hostKeys(ctx, c.Script)
		case smoke.CheckBuildUser:
			status, detail = t.script(ctx, c.Script, env, true, 0)
			if status == step.CheckPassed {
				status, detail = t.buildKeyRefused(ctx, buildKey, err)
			}
		default:
			status, detail = t.script(ctx, c.Script, env, true, 0)
		}
		t.record(c.Name, status, detail, start)
	}
	for _, ut := range img.Tests {
		start := time.Now()
		status, detail := t.userTest(ctx, ut.Name, ut.Inline, ut.Script, ut.Sudo, ut.Timeout)
		t.record("test "+ut.Name, status, detail, start)
	}
}

// cloudInit waits for cloud-init (its status must be done, not error) and runs the check script.
func (t *testInstance) cloudInit(ctx context.Context, script string, env map[string]string) (string, string) {
	if _, err := ssh.WaitCloudInit(ctx, t.client); err != nil {
		return step.CheckFailed, err.Error()
	}
	return t.script(ctx, script, env, true, 0)
}

// hostKeys compares the instance's SSH host keys with the build's: the one its sshd showed in the handshake
// and every public host key the script prints (sshd's key files in /etc/ssh), so that a key type the
// handshake did not pick is checked too.
func (t *testInstance) hostKeys(ctx context.Context, script string) (string, string) {
	if len(t.job.BuildHostKeys) == 0 {
		return step.CheckSkipped, "the final layer has no record of the build's host keys"
	}
	build, err := ssh.ParseHostKeys(t.job.BuildHostKeys)
	if err != nil {
		return step.CheckFailed, fmt.Sprintf("the build's recorded host keys: %v", err)
	}
	var out bytes.Buffer
	code, err := t.client.Run(ctx, script, ssh.RunOptions{Stdout: &out, Idempotent: true})
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d", code)
	}
	if err != nil {
		return step.CheckFailed, fmt.Sprintf("reading the instance's host keys (%s): %v", strings.TrimSpace(script), err)
	}
	for _, k := range t.hk.Accepted() {
		if shared(build, k.Type(), k.Marshal()) {
			return step.CheckFailed, sharedDetail(k.Type(), k.Marshal())
		}
	}
	files, err := keyBlobs(out.Bytes())
	if err != nil {
		return step.CheckFailed, fmt.Sprintf("the instance's host key files: %v", err)
	}
	for _, f := range files {
		if shared(build, f.typ, f.blob) {
			return step.CheckFailed, sharedDetail(f.typ, f.blob)
		}
	}
	return step.CheckPassed, ""
}

// publicKey is one line of a .pub file: its key type and the key in SSH wire format.
type publicKey struct {
	typ  string
	blob []byte
}

// keyBlobs reads the "TYPE BASE64 [COMMENT]" lines of public key files without parsing the keys: an
// instance may hold key types that golang.org/x/crypto/ssh no longer reads (cloud-init still makes an
// ssh-dss key on Debian 12), and comparing the bytes needs no parser.
func keyBlobs(b []byte) ([]publicKey, error) {
	var keys []publicKey
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		var blob []byte
		var err error
		if len(f) >= 2 {
			blob, err = base64.StdEncoding.DecodeString(f[1])
		}
		if len(f) < 2 || err != nil || len(blob) == 0 {
			return nil, fmt.Errorf("line %d is not a public key (TYPE BASE64 [COMMENT])", i+1)
		}
		keys = append(keys, publicKey{typ: f[0], blob: blob})
	}
	if len(keys) == 0 {
		return nil, errors.New("no public host key in /etc/ssh")
	}
	return keys, nil
}

// shared tells whether the key (its type and wire format) is one of build's.
func shared(build []gossh.PublicKey, typ string, blob []byte) bool {
	for _, b := range build {
		if b.Type() == typ && bytes.Equal(b.Marshal(), blob) {
			return true
		}
	}
	return false
}

func sharedDetail(typ string, blob []byte) string {
	sum := sha256.Sum256(blob)
	return fmt.Sprintf("the instance has the build's SSH host key %s SHA256:%s: every instance of the image would share it",
		typ, base64.RawStdEncoding.EncodeToString(sum[:]))
}

// buildKeyRefused tries the build key once: sshd must refuse it.
func (t *testInstance) buildKeyRefused(ctx context.Context, key *ssh.Key, parseErr error) (string, string) {
	if parseErr != nil {
		return step.CheckFailed, fmt.Sprintf("the build key cannot be read to try it: %v", parseErr)
	}
	err := ssh.TryLogin(ctx, t.vm.SSHAddr(), t.job.BuildUser, key, t.hk.Callback())
	switch {
	case err == nil:
		return step.CheckFailed, fmt.Sprintf("the build key still logs in as %s", t.job.BuildUser)
	case ssh.LoginRefused(err):
		return step.CheckPassed, ""
	}
	return step.CheckFailed, fmt.Sprintf("trying the build key did not get an answer: %v", err)
}

// script runs a check script in the guest; exit 0 passes, smoke.SkipExit skips, anything else fails.
func (t *testInstance) script(ctx context.Context, script string, env map[string]string, sudo bool, timeout time.Duration) (string, string) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	out := &step.LineTail{}
	code, err := t.client.Run(ctx, script, ssh.RunOptions{Env: env, Sudo: sudo, Stdout: out, Stderr: out, Idempotent: true})
	switch {
	case err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return step.CheckFailed, fmt.Sprintf("timed out after %s\n%s", timeout, out.Tail())
	case err != nil:
		return step.CheckFailed, fmt.Sprintf("%v\n%s", err, out.Tail())
	case code == smoke.SkipExit:
		return step.CheckSkipped, out.Tail()
	case code != 0:
		return step.CheckFailed, fmt.Sprintf("exit status %d\n%s", code, out.Tail())
	}
	return step.CheckPassed, ""
}

// userTest runs a test block: its inline commands or its script, uploaded first.
func (t *testInstance) userTest(ctx context.Context, name string, inline []string, script string, sudo bool, timeout time.Duration) (string, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd, err := step.CommandFor(ctx, t.client, t.job.Shared, t.job.ConfigDir, "test", name, script, inline)
	if err != nil {
		return step.CheckFailed, err.Error()
	}
	status, detail := t.script(ctx, cmd, nil, sudo, timeout)
	if status == step.CheckSkipped { // exit 77 from a user's test is a failure like any other
		status, detail = step.CheckFailed, fmt.Sprintf("exit status %d\n%s", smoke.SkipExit, detail)
	}
	return status, detail
}

// record adds a check's result to the report and shows it.
func (t *testInstance) record(name, status, detail string, start time.Time) {
	detail = strings.TrimSpace(t.job.Redact(detail))
	t.report.Checks = append(t.report.Checks, step.CheckResult{Name: name, Status: status, Detail: detail,
		Seconds: time.Since(start).Round(10 * time.Millisecond).Seconds()})
	line := fmt.Sprintf("check %s: %s", name, status)
	if status == step.CheckSkipped && detail != "" {
		line += " (" + firstLine(detail) + ")"
	}
	t.job.Output(line)
	if status == step.CheckFailed {
		for _, l := range strings.Split(detail, "\n") {
			t.job.Output("  " + l)
		}
	}
}

// failure is the error of a test with failed checks: their names, then each one's output.
func (t *testInstance) failure() error {
	failed := t.report.Failed()
	if len(failed) == 0 {
		return nil
	}
	names := make([]string, len(failed))
	var b strings.Builder
	for i, c := range failed {
		names[i] = c.Name
		fmt.Fprintf(&b, "\n--- check %s:\n%s", c.Name, c.Detail)
	}
	return fmt.Errorf("the new instance failed check(s) %s; the outputs are kept but marked unverified%s",
		strings.Join(names, ", "), b.String())
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"gitlab.com/imgform/imgform/internal/engine"
	"gitlab.com/imgform/imgform/internal/state"
)

// resumeConfig is a configuration with a short first boot (no package upgrade) whose second provisioner
// uses what the first one left in the running system: a file in /run, a service started with systemd-run
// and a file in /tmp, all gone after a reboot. Before them, provision "zero" reboots the guest (reboot =
// true, issue 15.4), and "one" checks that it runs in the new boot: a build goes on after a reboot. second is the second provisioner's inline list; memory the
// machine's memory, which is not in any key. The guest reaches the host's loopback (host_loopback), where
// the test serves a file, to check the network of a resumed guest.
func resumeConfig(second, memory string) string {
	return fmt.Sprintf(`variable "source_url" {}
variable "source_checksum" {}
variable "zstd_level" {}

image "resume" {
  source {
    url      = var.source_url
    checksum = var.source_checksum
  }
  machine {
    memory        = %q
    cpus          = 2
    disk_size     = "3GiB"
    host_loopback = true
  }
  userdata {
    cloud_config = {
      ssh_pwauth = false
    }
  }
  provision "zero" {
    inline = ["sudo cp /proc/sys/kernel/random/boot_id /var/lib/imgform-boot-before"]
    reboot = true
  }
  provision "one" {
    inline = [
      "test \"$(cat /proc/sys/kernel/random/boot_id)\" != \"$(cat /var/lib/imgform-boot-before)\"",
      "echo left-by-one | sudo tee /run/imgform-one",
      "sudo systemd-run --unit imgform-one-service sleep infinity",
      "echo left-by-one > /tmp/imgform-one",
    ]
  }
  provision "two" {
    inline = %s
  }
  output "qcow2" {
    format = "qcow2"
    path   = "dist/resume.qcow2"
  }
}
`, memory, second)
}

// strictSecond fails unless the running system of provision "one" is there: in a full build it is, and in
// an incremental build only when the VM was resumed rather than booted. It also prints the guest's clock
// and downloads a file the test serves on the host's loopback at port.
func strictSecond(version string, port int) string {
	return fmt.Sprintf(`[
      "grep -x left-by-one /run/imgform-one",
      "systemctl is-active imgform-one-service",
      "grep -x left-by-one /tmp/imgform-one",
      "date -u +guest-time=%%s",
      "bash -c 'exec 3<>/dev/tcp/10.0.2.2/%d && printf \"GET /file HTTP/1.0\\r\\n\\r\\n\" >&3 && tail -n 1 <&3'",
      "echo %s",
    ]`, port, version)
}

// tolerantSecond says whether it finds provision "one"'s running system, for builds that boot.
func tolerantSecond(version string) string {
	return fmt.Sprintf(`[
      "if test -e /run/imgform-one; then echo found-running-system; else echo fresh-boot; fi",
      "echo %s",
    ]`, version)
}

// TestResumeFromSavedState builds a configuration whose second provisioner depends on the running system
// of the first, then changes the second: the incremental build resumes the VM saved with the first layer
// (no boot), its clock is set, and the provisioner passes as in the full build. A state that does not fit
// (another memory size) is planned as a boot with the reason; a damaged state is detected by its digest
// and the build boots instead. Tests are skipped: this is about the guest session, and the example's
// end-to-end test covers the test step.
func TestResumeFromSavedState(t *testing.T) {
	e := setup(t)
	e.dir = filepath.Join(t.TempDir(), "resume")
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(second, memory string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(e.dir, "main.imgform.hcl"), []byte(resumeConfig(second, memory)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(timeout time.Duration) error {
		eng := e.engine()
		eng.SkipTests = true
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := eng.Apply(ctx, e.load())
		noQEMULeft(t, e.store.Dir())
		return err
	}

	// The file a resumed guest downloads from the host's loopback (10.0.2.2 with host_loopback).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "served-by-the-test\n")
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	write(strictSecond("v1", port), "1GiB")
	start := time.Now()
	if err := apply(30 * time.Minute); err != nil {
		t.Fatalf("full build: %v", err)
	}
	full := time.Since(start)
	// provision "zero" rebooted the guest and the build went on in the new boot ("one" checks the boot ID).
	var zero []string
	for _, l := range e.rec.printed("resume/provision/zero") {
		zero = append(zero, l.text)
	}
	if j := strings.Join(zero, "\n"); !strings.Contains(j, "rebooting the guest") || !strings.Contains(j, "the guest is back after") {
		t.Errorf("provision \"zero\" (reboot = true) printed %q", zero)
	}
	t.Logf("reboot: %q", zero)
	one := e.layer("resume/provision/one")
	for _, f := range []string{"vmstate.zst", "vmstate.json"} {
		if _, ok := one.File(f); !ok {
			t.Fatalf("the layer of provision \"one\" has no %s", f)
		}
	}

	t.Run("resume after a change of the last provisioner", func(t *testing.T) {
		write(strictSecond("v2", port), "1GiB")
		sp := e.planSkippingTests().Step("resume/provision/two")
		if sp == nil || sp.Action != engine.ActionRun || sp.Start != engine.StartResume {
			t.Fatalf("plan of provision \"two\": %+v; want it to run, resuming", sp)
		}
		start := time.Now()
		if err := apply(20 * time.Minute); err != nil {
			t.Fatalf("incremental build: %v", err)
		}
		took := time.Since(start)
		t.Logf("bench: change of the last provisioner, resumed: %s, %.3f of the full build (%s)", took.Round(time.Second),
			took.Seconds()/full.Seconds(), full.Round(time.Second))
		if !e.rec.said(`resumed the VM saved with provision "one"`) {
			t.Errorf("no message about the resume: %q", e.rec.messages)
		}
		checkResumedGuest(t, e.rec.printed("resume/provision/two"))
		if got := strings.Join(e.rec.ran(), " "); got != "resume/cleanup resume/export/qcow2 resume/provision/two" {
			t.Errorf("ran %s", got)
		}
	})

	t.Run("a state of another machine is booted", func(t *testing.T) {
		write(tolerantSecond("v3"), "1152MiB")
		sp := e.planSkippingTests().Step("resume/provision/two")
		if sp == nil || sp.Start != engine.StartBoot || !strings.Contains(strings.Join(sp.Reasons, " "), "1152 MiB") {
			t.Fatalf("plan of provision \"two\" with more memory: %+v; want a boot because of the memory", sp)
		}
		t.Log(sp.Reasons)
	})

	bin := buildImgform(t)
	cli := func(args ...string) *exec.Cmd {
		args = append(args, "-var", "source_url="+e.img, "-var", "source_checksum=file:"+e.img+".SHA256SUMS",
			"-var", "zstd_level=3", e.dir)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "IMGFORM_CACHE_DIR="+e.store.Dir(), "IMGFORM_ACCELERATOR=tcg")
		return cmd
	}

	t.Run("shell at a cached step, on a terminal", func(t *testing.T) {
		write(strictSecond("v2", port), "1GiB") // the machine the state was saved on
		shellOnTerminal(t, cli("shell", "-step", "provision/one"))
		noQEMULeft(t, e.store.Dir())
	})

	t.Run("on-error=keep leaves the failed VM to log in to", func(t *testing.T) {
		write(`["echo about to fail", "false"]`, "1GiB")
		eng := e.engine()
		eng.SkipTests, eng.KeepOnError = true, true
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := eng.Apply(ctx, e.load())
			done <- err
		}()
		login := ""
		for login == "" {
			select {
			case err := <-done:
				t.Fatalf("apply ended before it kept the VM: %v", err)
			case <-time.After(time.Second):
			}
			login = e.rec.loginCommand()
		}
		// The command a user copies from the message, as a user runs it.
		out, err := exec.Command("sh", "-c", login+" -o BatchMode=yes 'cat /run/imgform-one; systemctl is-active imgform-one-service'").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "left-by-one") || !strings.Contains(string(out), "active") {
			t.Errorf("log in to the kept VM with %q: %v\n%s", login, err, out)
		}
		cancel()
		if err := <-done; err == nil || !strings.Contains(err.Error(), "exit") {
			t.Errorf("apply: %v; want the failed step's error", err)
		}
		if st := e.rec.finished["resume/provision/two"]; st != engine.StatusFailed {
			t.Errorf("provision \"two\" ended %s, want failed", st)
		}
		noQEMULeft(t, e.store.Dir())
	})

	t.Run("kill -9 while a state is saved", func(t *testing.T) {
		write(strictSecond("v3", port), "1GiB")
		cmd := cli("apply", "-skip-tests")
		var log strings.Builder
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// provision "two" resumes and runs; its layer's state is being written into a temp folder of the
		// store: kill imgform then.
		deadline := time.Now().Add(10 * time.Minute)
		for {
			saving, _ := filepath.Glob(filepath.Join(e.store.Dir(), "objects", "*", ".tmp-*", "data", "vmstate.zst"))
			if len(saving) > 0 {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("no state was saved within 10 minutes:\n%s", log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		time.Sleep(2 * time.Second) // QEMU gets SIGKILL from the kernel when imgform dies
		noQEMULeft(t, e.store.Dir())
		if obj, ok, _ := e.store.Lookup(mustKey(t, e.planSkippingTests().Step("resume/provision/two").Key)); ok {
			t.Errorf("the layer whose state was being saved is in the store: %v", obj.Files)
		}
		if err := apply(20 * time.Minute); err != nil {
			t.Fatalf("apply after the kill: %v", err)
		}
		if !e.rec.said(`resumed the VM saved with provision "one"`) {
			t.Errorf("the apply after the kill did not resume: %q", e.rec.messages)
		}
		rep, err := e.store.VerifyAll(context.Background(), state.VerifyOptions{})
		if err != nil || len(rep.Bad) != 0 {
			t.Errorf("cache verify after the kill: %v %+v", err, rep.Bad)
		}
	})

	t.Run("a damaged state is detected and booted instead", func(t *testing.T) {
		damage(t, one.Path("vmstate.zst"))
		write(tolerantSecond("v4"), "1GiB")
		if err := apply(20 * time.Minute); err != nil {
			t.Fatalf("build on a damaged state: %v", err)
		}
		if !e.rec.said("booting the cached layer", "instead of resuming") {
			t.Errorf("no warning about the damaged state: %q", e.rec.messages)
		}
		if e.rec.said("resumed the VM") {
			t.Error("the damaged state was resumed")
		}
	})
}

// checkResumedGuest checks what provision "two" (strictSecond) printed in a resumed guest: its clock is the
// host's (it stood still from the save on), and the download from the host went through the new network.
func checkResumedGuest(t *testing.T, lines []printedLine) {
	t.Helper()
	var skew time.Duration
	found, downloaded := false, false
	var texts []string
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l.text, "guest-time="); ok {
			guestTime, _ := strconv.ParseInt(v, 10, 64)
			// Against the host's clock when the line arrived (output is streamed within a second).
			skew, found = l.at.Sub(time.Unix(guestTime, 0)), true
		}
		downloaded = downloaded || l.text == "served-by-the-test"
		texts = append(texts, l.text)
	}
	if !found || skew > 15*time.Second || skew < -15*time.Second {
		t.Errorf("the resumed guest's clock is %s off the host's (%q)", skew.Round(time.Second), texts)
	}
	if !downloaded {
		t.Errorf("the resumed guest did not download the file from the host's loopback: %q", texts)
	}
}

// layer returns the stored object of the step with the given ID in the last plan.
func (e *env) layer(id string) *state.Object {
	e.t.Helper()
	sp := e.planSkippingTests().Step(id)
	if sp == nil {
		e.t.Fatalf("no step %s", id)
	}
	obj, ok, err := e.store.Lookup(mustKey(e.t, sp.Key))
	if err != nil || !ok {
		e.t.Fatalf("step %s: not in the store (%v)", id, err)
	}
	return obj
}

func (e *env) planSkippingTests() *engine.Plan {
	e.t.Helper()
	eng := e.engine()
	eng.SkipTests = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := eng.Plan(ctx, e.load())
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// damage flips one byte in the middle of a stored file (the store keeps its files read-only).
func damage(t *testing.T, path string) {
	t.Helper()
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	off := fi.Size() / 2
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// shellOnTerminal runs imgform shell on a pseudo-terminal and types into the guest's shell as a user does:
// it reads what provision "one" left running and exits with a status of its own.
func shellOnTerminal(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	var screen strings.Builder
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&lockedWriter{b: &screen}, tty)
	}()
	seen := func(s string) bool {
		screenMu.Lock()
		defer screenMu.Unlock()
		return strings.Contains(screen.String(), s)
	}
	// The guest's bash prompt ends in "$ " once the login shell is up.
	for !seen("$ ") {
		select {
		case <-read:
			t.Fatalf("imgform shell ended before the prompt:\n%s", screen.String())
		case <-ctx.Done():
			t.Fatalf("no prompt:\n%s", screen.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if _, err := io.WriteString(tty, "cat /run/imgform-one; systemctl is-active imgform-one-service; exit 7\n"); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	<-read
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Errorf("imgform shell: %v; want the shell's exit status 7", err)
	}
	screenMu.Lock()
	defer screenMu.Unlock()
	out := screen.String()
	t.Logf("terminal:\n%s", out)
	if !strings.Contains(out, "left-by-one") || !strings.Contains(out, "\nactive") && !strings.Contains(out, "\r\nactive") {
		t.Errorf("the shell did not see provision \"one\"'s running system")
	}
}

var screenMu sync.Mutex

// lockedWriter appends to b under screenMu.
type lockedWriter struct{ b *strings.Builder }

func (w *lockedWriter) Write(p []byte) (int, error) {
	screenMu.Lock()
	defer screenMu.Unlock()
	return w.b.Write(p)
}

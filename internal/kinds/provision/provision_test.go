package provision

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/step/steptest"
)

func run(t *testing.T, p *config.Provisioner, sh *steptest.Shell) (error, []string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "motd"), []byte("welcome\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "setup.sh"), []byte("#!/bin/sh\necho setup\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var lines []string
	s := &step.Step{Addr: step.Address{Image: "img", Kind: "provision", Name: p.Name}, Kind: Kind{}, Config: p}
	err := Kind{}.RunGuest(context.Background(), &step.GuestEnv{Shell: sh, ConfigDir: dir, BuildUser: step.BuildUserName,
		Output: func(l string) { lines = append(lines, l) },
		Redact: func(s string) string { return strings.ReplaceAll(s, "hunter2", "(sensitive)") }}, s)
	return err, lines
}

// Files go up first with their mode and owner, then the script is uploaded and run by path with the block's
// environment and sudo, its output streamed line by line.
func TestRunGuestUploadsThenRuns(t *testing.T) {
	sh := &steptest.Shell{Reply: func(_ context.Context, cmd string) (string, int, error) { return "one\ntwo\n", 0, nil }}
	p := &config.Provisioner{Name: "setup", Script: "setup.sh", Sudo: true, Timeout: time.Minute,
		Environment: map[string]string{"A": "1"},
		Uploads: []*config.Upload{
			{Source: "motd", Destination: "/etc/motd", Mode: "0640", Owner: "root:adm"},
			{Content: "x=1\n", HasContent: true, Destination: "/etc/x.conf"},
		}}
	err, lines := run(t, p, sh)
	if err != nil {
		t.Fatal(err)
	}
	if len(sh.Uploads) != 3 {
		t.Fatalf("uploads %+v", sh.Uploads)
	}
	if u := sh.Uploads[0]; u.Dest != "/etc/motd" || u.Content != "welcome\n" || u.Opts.Mode != 0o640 || u.Opts.Owner != "root:adm" || !u.Opts.Sudo {
		t.Errorf("first upload %+v", u)
	}
	if u := sh.Uploads[1]; u.Dest != "/etc/x.conf" || u.Content != "x=1\n" {
		t.Errorf("content upload %+v", u)
	}
	if u := sh.Uploads[2]; u.Dest != "/tmp/imgform-provision-setup" || !strings.Contains(u.Content, "echo setup") || u.Opts.Mode != 0o700 {
		t.Errorf("script upload %+v", u)
	}
	if len(sh.Runs) != 1 || !strings.HasPrefix(sh.Runs[0].Cmd, "/tmp/imgform-provision-setup;") || !sh.Runs[0].Opts.Sudo || sh.Runs[0].Opts.Env["A"] != "1" {
		t.Errorf("runs %+v", sh.Runs)
	}
	if strings.Join(lines, "|") != "one|two" {
		t.Errorf("output lines %q", lines)
	}
}

// A non-zero exit fails the step with the last output, redacted; a bad mode fails before anything runs.
func TestRunGuestFailures(t *testing.T) {
	sh := &steptest.Shell{Reply: func(context.Context, string) (string, int, error) { return "password hunter2 refused\n", 3, nil }}
	err, _ := run(t, &config.Provisioner{Name: "x", Inline: []string{"false"}, Timeout: time.Minute}, sh)
	if err == nil || !strings.Contains(err.Error(), "exited with status 3") || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "(sensitive) refused") {
		t.Errorf("error %v", err)
	}
	if sh.Runs[0].Cmd != "set -e\nfalse" {
		t.Errorf("inline command %q", sh.Runs[0].Cmd)
	}

	sh = &steptest.Shell{}
	err, _ = run(t, &config.Provisioner{Name: "x", Inline: []string{"true"}, Timeout: time.Minute,
		Uploads: []*config.Upload{{Content: "x", HasContent: true, Destination: "/x", Mode: "9z"}}}, sh)
	if err == nil || !strings.Contains(err.Error(), `mode "9z"`) || len(sh.Runs) != 0 {
		t.Errorf("bad mode: %v, runs %+v", err, sh.Runs)
	}
}

// The provisioner's timeout ends a command that hangs, with a hint to raise it.
func TestRunGuestTimeout(t *testing.T) {
	sh := &steptest.Shell{Reply: func(ctx context.Context, _ string) (string, int, error) {
		<-ctx.Done()
		return "", -1, ctx.Err()
	}}
	err, _ := run(t, &config.Provisioner{Name: "x", Inline: []string{"sleep 1000"}, Timeout: 50 * time.Millisecond}, sh)
	if err == nil || !strings.Contains(err.Error(), "timed out after 50ms (raise the provisioner's timeout)") {
		t.Errorf("error %v", err)
	}
}

// Issue 12.4: a file edited between the plan (which keyed its content) and the upload fails the step instead
// of storing the new content under the old key; the script too.
func TestRunGuestRefusesFilesChangedSincePlan(t *testing.T) {
	for _, which := range []string{"upload", "script"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "payload")
			if err := os.WriteFile(file, []byte("planned\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			kc := &step.KeyContext{Config: &config.Config{Dir: dir}, Files: step.OpenFileHasher(t.TempDir()), Shared: &step.Shared{}}
			if _, err := kc.HashFile(context.Background(), "payload"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte("edited during the apply\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			p := &config.Provisioner{Name: "x", Timeout: time.Minute}
			if which == "upload" {
				p.Inline = []string{"true"}
				p.Uploads = []*config.Upload{{Source: "payload", Destination: "/etc/payload"}}
			} else {
				p.Script = "payload"
			}
			sh := &steptest.Shell{}
			s := &step.Step{Addr: step.Address{Image: "img", Kind: "provision", Name: "x"}, Kind: Kind{}, Config: p}
			err := Kind{}.RunGuest(context.Background(), &step.GuestEnv{Shell: sh, ConfigDir: dir, Shared: kc.Shared,
				Output: func(string) {}, Redact: func(s string) string { return s }}, s)
			if err == nil || !strings.Contains(err.Error(), "changed while imgform ran") {
				t.Fatalf("error %v", err)
			}
			if len(sh.Runs) != 0 {
				t.Errorf("ran %+v after a changed file", sh.Runs)
			}
		})
	}
}

// The key holds the text imgform wraps around the commands in the guest (set -e before inline commands,
// the ssh package's run and upload scripts): a change of it must build provisioners again.
func TestKeyHoldsTheCommandWrapper(t *testing.T) {
	_, inputs := keyOf(t, &config.Provisioner{Name: "one", Inline: []string{"true"}})
	for _, in := range inputs {
		if in.Name == "command wrapper" && in.Type == step.InputScript && in.Digest == step.Digest([]byte(step.GuestCommandText())) {
			if text := step.GuestCommandText(); !strings.Contains(text, "set -e") || !strings.Contains(text, "imgform-run") {
				t.Errorf("GuestCommandText lacks the inline prelude or the run wrapper:\n%s", text)
			}
			return
		}
	}
	t.Fatalf("inputs %+v: no command wrapper input", inputs)
}

// Packer's provisioner options: scripts run in order, each uploaded and run by path; valid_exit_codes turns
// another status into success; max_retries runs failing commands again (uploading the script again, since
// its command removes it) and fails with the last attempt's output when all fail; pause_before waits first.
func TestRunGuestPackerOptions(t *testing.T) {
	retryDelay = time.Millisecond
	dir := t.TempDir()
	for name, body := range map[string]string{"a.sh": "#!/bin/sh\necho a\n", "b.sh": "#!/bin/sh\necho b\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	guest := func(p *config.Provisioner, sh *steptest.Shell) ([]string, error) {
		var lines []string
		s := &step.Step{Addr: step.Address{Image: "img", Kind: "provision", Name: p.Name}, Kind: Kind{}, Config: p}
		err := Kind{}.RunGuest(context.Background(), &step.GuestEnv{Shell: sh, ConfigDir: dir, Output: func(l string) { lines = append(lines, l) },
			Redact: func(s string) string { return s }}, s)
		return lines, err
	}

	sh := &steptest.Shell{Reply: func(_ context.Context, cmd string) (string, int, error) { return "", 2, nil }}
	p := &config.Provisioner{Name: "s", Scripts: []string{"a.sh", "b.sh"}, ValidExitCodes: []int{0, 2}, Timeout: time.Minute,
		PauseBefore: 30 * time.Millisecond}
	start := time.Now()
	lines, err := guest(p, sh)
	if err != nil || len(sh.Runs) != 2 || len(sh.Uploads) != 2 || !strings.Contains(sh.Uploads[0].Content, "echo a") || !strings.Contains(sh.Uploads[1].Content, "echo b") {
		t.Fatalf("scripts with valid exit code 2: %v, runs %+v, uploads %+v", err, sh.Runs, sh.Uploads)
	}
	if time.Since(start) < 30*time.Millisecond || len(lines) == 0 || !strings.Contains(lines[0], "pause_before: waiting 30ms") {
		t.Errorf("pause_before: %v, lines %q", time.Since(start), lines)
	}

	n := 0
	sh = &steptest.Shell{Reply: func(_ context.Context, cmd string) (string, int, error) {
		n++
		if n < 3 {
			return fmt.Sprintf("try %d failed\n", n), 1, nil
		}
		return "ok\n", 0, nil
	}}
	lines, err = guest(&config.Provisioner{Name: "r", Script: "a.sh", MaxRetries: 2, Timeout: time.Minute}, sh)
	if err != nil || len(sh.Runs) != 3 || len(sh.Uploads) != 3 || !strings.Contains(strings.Join(lines, "\n"), "attempt 2 of 3 failed (exited with status 1); trying again") {
		t.Errorf("max_retries = 2, succeeding at the third: %v, %d runs, %d uploads, lines %q", err, len(sh.Runs), len(sh.Uploads), lines)
	}
	sh = &steptest.Shell{Reply: func(context.Context, string) (string, int, error) { return "still broken\n", 4, nil }}
	_, err = guest(&config.Provisioner{Name: "r", Inline: []string{"false"}, MaxRetries: 1, ValidExitCodes: []int{0, 2}, Timeout: time.Minute}, sh)
	if err == nil || len(sh.Runs) != 2 || !strings.Contains(err.Error(), "exited with status 4 (valid_exit_codes = [0 2]); last output:\nstill broken") {
		t.Errorf("every attempt fails: %v, %d runs", err, len(sh.Runs))
	}
}

// reboot = true: the guest is rebooted after the commands (a lost connection is the reboot, not an error)
// and the step waits for a new boot ID and for systemd; expect_disconnect makes a lost connection during
// the commands a success and waits for the guest to answer again. Without it, a lost connection fails.
func TestRunGuestReboot(t *testing.T) {
	var bootIDs = []string{"aaa\n", "", "aaa\n", "bbb\n"} // before, unreachable, the old system, the new one
	var reads int
	sh := &steptest.Shell{Reply: func(_ context.Context, cmd string) (string, int, error) {
		switch {
		case strings.HasPrefix(cmd, "cat /proc/sys/kernel/random/boot_id"):
			id := bootIDs[min(reads, len(bootIDs)-1)]
			reads++
			if id == "" {
				return "", -1, io.EOF
			}
			return id, 0, nil
		case cmd == "systemctl reboot":
			return "", -1, io.EOF
		}
		return "", 0, nil
	}}
	lines, err := runGuest(t, &config.Provisioner{Name: "k", Inline: []string{"apt-get -y upgrade"}, Reboot: true, Timeout: time.Minute}, sh)
	if err != nil || reads != 4 {
		t.Fatalf("reboot: %v after %d boot ID reads", err, reads)
	}
	var cmds []string
	for _, r := range sh.Runs {
		cmds = append(cmds, strings.SplitN(r.Cmd, "\n", 2)[0])
	}
	if got := strings.Join(cmds, " | "); !strings.HasPrefix(got, "set -e | cat /proc/sys/kernel/random/boot_id | systemctl reboot | cat ") ||
		!strings.HasSuffix(got, "systemctl is-system-running --wait >/dev/null 2>&1 || true") {
		t.Errorf("commands: %s", got)
	}
	if j := strings.Join(lines, "\n"); !strings.Contains(j, "rebooting the guest") || !strings.Contains(j, "the guest is back after") {
		t.Errorf("output %q", lines)
	}

	lost := 0
	sh = &steptest.Shell{Reply: func(_ context.Context, cmd string) (string, int, error) {
		if cmd == "true" && lost < 2 {
			lost++
			return "", -1, io.EOF
		}
		if strings.HasPrefix(cmd, "set -e") {
			return "", -1, io.EOF
		}
		return "", 0, nil
	}}
	if _, err := runGuest(t, &config.Provisioner{Name: "d", Inline: []string{"reboot"}, ExpectDisconnect: true, Timeout: time.Minute}, sh); err != nil || lost != 2 {
		t.Errorf("expect_disconnect: %v, %d failed waits", err, lost)
	}
	if _, err := runGuest(t, &config.Provisioner{Name: "d", Inline: []string{"reboot"}, Timeout: time.Minute}, sh); err == nil {
		t.Error("a lost connection without expect_disconnect passed")
	}
}

// runGuest runs a provisioner against a fake shell in an empty configuration folder.
func runGuest(t *testing.T, p *config.Provisioner, sh *steptest.Shell) ([]string, error) {
	t.Helper()
	var lines []string
	s := &step.Step{Addr: step.Address{Image: "img", Kind: "provision", Name: p.Name}, Kind: Kind{}, Config: p}
	err := Kind{}.RunGuest(context.Background(), &step.GuestEnv{Shell: sh, ConfigDir: t.TempDir(), Output: func(l string) { lines = append(lines, l) },
		Redact: func(s string) string { return s }}, s)
	return lines, err
}

// Downloads run after the commands: each guest file is read with cat (with sudo when the provisioner has it)
// into the file Keep names in the step's layer object, download-0, download-1, ...; Downloads tells the
// engine where apply writes them. A file the guest cannot read fails the step.
func TestRunGuestDownloads(t *testing.T) {
	kept := t.TempDir()
	guest := func(p *config.Provisioner, sh *steptest.Shell) ([]string, error) {
		var lines []string
		s := &step.Step{Addr: step.Address{Image: "img", Kind: "provision", Name: p.Name}, Kind: Kind{}, Config: p}
		err := Kind{}.RunGuest(context.Background(), &step.GuestEnv{Shell: sh, ConfigDir: t.TempDir(),
			Output: func(l string) { lines = append(lines, l) }, Redact: func(s string) string { return s },
			Keep: func(name string) (string, error) { return filepath.Join(kept, name), nil }}, s)
		return lines, err
	}
	sh := &steptest.Shell{Reply: func(_ context.Context, cmd string) (string, int, error) {
		switch {
		case cmd == "cat -- /run/packages.txt":
			return "bash 5.2\ncurl 7.88\n", 0, nil
		case strings.Contains(cmd, "cat -- '/var/log/it'\\''s.json'"):
			return "{}", 0, nil
		}
		return "", 0, nil
	}}
	p := &config.Provisioner{Name: "sbom", Inline: []string{"dpkg-query -W > /run/packages.txt"}, Sudo: true, Timeout: time.Minute,
		Downloads: []*config.Download{{Source: "/run/packages.txt", Destination: "dist/"}, {Source: "/var/log/it's.json", Destination: "sbom.json"}}}
	lines, err := guest(p, sh)
	if err != nil {
		t.Fatal(err)
	}
	if len(sh.Runs) != 3 || !strings.Contains(sh.Runs[0].Cmd, "dpkg-query") || !sh.Runs[1].Opts.Sudo {
		t.Fatalf("runs %+v: want the commands, then the downloads with sudo", sh.Runs)
	}
	for name, want := range map[string]string{"download-0": "bash 5.2\ncurl 7.88\n", "download-1": "{}"} {
		if b, err := os.ReadFile(filepath.Join(kept, name)); err != nil || string(b) != want {
			t.Errorf("kept %s: %q, %v; want %q", name, b, err, want)
		}
	}
	if !strings.Contains(strings.Join(lines, "\n"), "downloaded /run/packages.txt (19 bytes)") {
		t.Errorf("output %q", lines)
	}
	got := Kind{}.Downloads(&step.Step{Config: p})
	if len(got) != 2 || got[0] != (step.Download{File: "download-0", Source: "/run/packages.txt", Path: "dist/packages.txt"}) ||
		got[1].Path != "sbom.json" {
		t.Errorf("Downloads %+v", got)
	}

	sh = &steptest.Shell{Reply: func(_ context.Context, cmd string) (string, int, error) {
		if strings.HasPrefix(cmd, "cat ") {
			return "", 1, nil
		}
		return "", 0, nil
	}}
	_, err = guest(&config.Provisioner{Name: "missing", Timeout: time.Minute, Downloads: []*config.Download{{Source: "/nope", Destination: "x"}}}, sh)
	if err == nil || !strings.Contains(err.Error(), "download of /nope: cat exited with status 1") {
		t.Errorf("a guest file that cannot be read: %v", err)
	}
}

// The guest paths of the downloads are in the key (the layer object holds what they read); where apply
// writes them is not (a new destination needs no build).
func TestKeyHoldsDownloadSourcesOnly(t *testing.T) {
	key := func(dl config.Download) string {
		k, _ := keyOf(t, &config.Provisioner{Name: "p", Inline: []string{"true"}, Downloads: []*config.Download{&dl}})
		return k.String()
	}
	a := key(config.Download{Source: "/a", Destination: "x"})
	if b := key(config.Download{Source: "/a", Destination: "elsewhere/"}); a != b {
		t.Error("a new destination changed the key")
	}
	if b := key(config.Download{Source: "/b", Destination: "x"}); a == b {
		t.Error("another guest file did not change the key")
	}
}

// keyOf keys a step of the provisioner p over a boot step.
func keyOf(t *testing.T, p *config.Provisioner) (state.Key, []step.Input) {
	t.Helper()
	parent := &step.Step{Addr: step.Address{Image: "img", Kind: "boot"}}
	s := &step.Step{Addr: step.Address{Image: "img", Kind: "provision", Name: p.Name}, Kind: Kind{}, Config: p, Parent: parent}
	return steptest.Key(t, &step.KeyContext{Config: &config.Config{Dir: t.TempDir()}}, s)
}

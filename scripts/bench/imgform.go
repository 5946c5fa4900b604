package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// imgform runs the imgform binary against one cache folder, the way a user would: as a subprocess, with
// -json, so the bench measures the real CLI and reads only its documented output.
type imgform struct {
	bin      string   // absolute path of the binary
	cacheDir string   // IMGFORM_CACHE_DIR, absolute
	vars     []string // -var NAME=VALUE arguments
	logDir   string   // where the raw output of each run is kept
	progress io.Writer
}

// run is one imgform invocation and what was measured around it.
type run struct {
	Name    string
	Args    []string
	Start   time.Time
	Wall    time.Duration // from exec to exit, measured here
	Events  []event       // apply -json lines
	Stdout  []byte        // plan -json output
	Procs   procReport
	Load    load
	ExitErr error
	Stderr  string
}

// Steps is the run's steps from its events.
func (r *run) Steps() []stepTime { return steps(r.Events) }

// env is the environment of imgform: the caller's, without anything that would change what is built or
// where it is cached (variables and cache folder come from the bench only).
func (im *imgform) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "IMGFORM_VAR_") || strings.HasPrefix(kv, "IMGFORM_CACHE_DIR=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "IMGFORM_CACHE_DIR="+im.cacheDir)
}

// apply runs `imgform apply -json` on dir.
func (im *imgform) apply(ctx context.Context, name, dir string) (*run, error) {
	args := append([]string{"apply", "-json"}, im.varArgs()...)
	return im.exec(ctx, name, append(args, dir), true)
}

// plan runs `imgform plan -json` on dir.
func (im *imgform) plan(ctx context.Context, name, dir string) (*run, error) {
	args := append([]string{"plan", "-json"}, im.varArgs()...)
	return im.exec(ctx, name, append(args, dir), false)
}

func (im *imgform) varArgs() []string {
	var args []string
	for _, v := range im.vars {
		args = append(args, "-var", v)
	}
	return args
}

// exec runs imgform once, watching its QEMU processes and the machine's load meanwhile. With events,
// stdout is read line by line as apply -json events, and step starts and ends are echoed to the progress
// writer so that whoever tails the log sees where a 10-minute build is.
func (im *imgform) exec(ctx context.Context, name string, args []string, events bool) (*run, error) {
	r := &run{Name: name, Args: args}
	logPath := filepath.Join(im.logDir, name+".out")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()

	cmd := exec.CommandContext(ctx, im.bin, args...)
	cmd.Env = im.env()
	// On Ctrl-C imgform gets an interrupt, as from a terminal, so it stops its VM and keeps what finished;
	// it is killed only if it does not exit within a minute.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(&stderr, logFile)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(im.progress, "%s  %s: imgform %s\n", stamp(), name, strings.Join(args, " "))
	meter := startLoad()
	r.Start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := startWatcher(cmd.Process.Pid, im.cacheDir)

	var out bytes.Buffer
	sc := bufio.NewScanner(io.TeeReader(stdout, logFile))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !events {
			out.Write(line)
			out.WriteByte('\n')
			continue
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			fmt.Fprintf(im.progress, "%s  %s: not an event: %s\n", stamp(), name, line)
			continue
		}
		r.Events = append(r.Events, e)
		im.echo(name, e)
	}
	scanErr := sc.Err()
	r.ExitErr = cmd.Wait()
	r.Wall = time.Since(r.Start)
	r.Procs = w.Stop()
	r.Load = meter.Stop(runtime.NumCPU())
	r.Stdout = out.Bytes()
	r.Stderr = stderr.String()
	if scanErr != nil && r.ExitErr == nil {
		r.ExitErr = scanErr
	}
	fmt.Fprintf(im.progress, "%s  %s: exit after %s (%v)\n", stamp(), name, fmtDur(r.Wall), exitText(r.ExitErr))
	return r, nil
}

// echo prints the events a human watching the bench cares about.
func (im *imgform) echo(name string, e event) {
	switch e.Type {
	case "step_started":
		fmt.Fprintf(im.progress, "%s  %s: %s started\n", stamp(), name, e.Step)
	case "step_finished":
		extra := ""
		if e.Error != "" {
			extra = ": " + e.Error
		}
		fmt.Fprintf(im.progress, "%s  %s: %s %s in %s%s\n", stamp(), name, e.Step, e.Status,
			fmtDur(time.Duration(e.ElapsedMs)*time.Millisecond), extra)
	case "message":
		if e.Level == "warn" {
			fmt.Fprintf(im.progress, "%s  %s: warning: %s\n", stamp(), name, e.Line)
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

func stamp() string { return time.Now().Format("15:04:05") }

// check fails with imgform's own words when a run did not succeed.
func (r *run) check() error {
	if r.ExitErr == nil {
		return nil
	}
	var why []string
	for _, s := range failed(r.Steps()) {
		why = append(why, fmt.Sprintf("%s %s: %s", s.ID, s.Status, s.Error))
	}
	tail := r.Stderr
	if len(tail) > 2000 {
		tail = tail[len(tail)-2000:]
	}
	return fmt.Errorf("%s: imgform %s: %v\n%s\n%s", r.Name, strings.Join(r.Args, " "), r.ExitErr,
		strings.Join(why, "\n"), tail)
}

// accelWarning returns imgform's warning about the accelerator (the fall back from KVM to TCG), if any.
func (r *run) accelWarning() string {
	for _, e := range r.Events {
		if e.Type == "message" && e.Level == "warn" && (strings.Contains(e.Line, "TCG") || strings.Contains(e.Line, "KVM")) {
			return e.Line
		}
	}
	return ""
}

// version returns the output of `imgform version`.
func (im *imgform) version(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, im.bin, "version").CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

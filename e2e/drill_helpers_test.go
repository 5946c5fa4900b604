//go:build drills

// Failure drills (make drills, docs/reliability.md): each drill drives the real imgform binary as a
// subprocess against a fresh cache folder and a small configuration derived from the example, breaks
// something on purpose and checks what imgform does about it.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/steps/qemu/qemutest"
)

// drillRoot holds what the drills share in one test run: the imgform binary and the golden cache.
var drillRoot string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imgform-drills-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	drillRoot = dir
	code := m.Run()
	if os.Getenv("IMGFORM_DRILL_KEEP") == "" {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "drills: kept %s\n", dir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binPath string
	binErr  error

	imgOnce sync.Once
	imgPath string
	imgErr  error
)

// drillBinary builds cmd/imgform once per test run.
func drillBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		root, err := qemutest.RepoRoot()
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(drillRoot, "imgform")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/imgform")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// drillImage returns the Debian 12 test image (scripts/build-test-image.sh) in its netplan variant, the
// network stack of Debian's official cloud images (the end-to-end test of the example uses the ifupdown one).
func drillImage(t *testing.T) string {
	t.Helper()
	imgOnce.Do(func() {
		if imgErr = qemutest.RequireQEMU(); imgErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		imgPath, imgErr = qemutest.TestImageVariant(ctx, "netplan")
	})
	if imgErr != nil {
		t.Fatal(imgErr)
	}
	return imgPath
}

// drillImageName and drillOutput are the image and output of the drill configuration.
const (
	drillImageName = "debian-12-base"
	drillOutput    = "debian-12-base-2026.11.qcow2.zst"
)

// drillConfigOptions change the drill configuration.
type drillConfigOptions struct {
	// Secret, when set, adds a sensitive variable with this value, used in a write_files entry of the
	// user-data and in the environment of provisioner "motd", which also prints it and runs with sudo;
	// the cleanup then keeps the logs (its default).
	Secret string
}

// writeDrillConfig copies examples/debian-12-base into dir and trims it for speed: no package update or
// upgrade and no extra packages (the first boot takes 1-2 minutes under TCG instead of 8), zstd level 3.
// It keeps the user-data, the network unit, both provisioners, the cleanup and the output. The output
// folder is a variable (output_dir, default "dist") and the source comes from drill.auto.imgvars.hcl.
func writeDrillConfig(t *testing.T, dir, img string, o drillConfigOptions) {
	t.Helper()
	root, err := qemutest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "examples", "debian-12-base")+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	_ = os.RemoveAll(filepath.Join(dir, "dist"))
	edit := func(name string, pairs ...string) {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(s, pairs[i]) {
				t.Fatalf("the example changed: %s no longer holds %q; update writeDrillConfig", name, pairs[i])
			}
			s = strings.Replace(s, pairs[i], pairs[i+1], 1)
		}
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := []string{
		"package_update  = true", "package_update  = false",
		"package_upgrade = true", "package_upgrade = false",
		`path        = "dist/debian-12-base-${var.version}.qcow2.zst"`, `path        = "${var.output_dir}/debian-12-base-${var.version}.qcow2.zst"`,
	}
	extra := `variable "output_dir" {
  type    = string
  default = "dist"
}
`
	if o.Secret != "" {
		main = append(main,
			"      write_files = [\n", "      write_files = [\n        {\n          path        = \"/etc/drill-secret\"\n          content     = \"drill secret: ${var.drill_secret}\\n\"\n          permissions = \"0600\"\n        },\n",
			// As root (sudo logs the commands it runs) and with cleanup's default for logs (kept): what
			// does a default build leave in /var/log?
			"    logs            = true\n", "    logs            = false\n",
			`inline = ["test -s /etc/motd"]`, `sudo        = true`+"\n    environment = { DRILL_SECRET = var.drill_secret }"+"\n    inline      = [\"test -s /etc/motd\", \"test -n \\\"$DRILL_SECRET\\\"\", \"echo \\\"the secret is $DRILL_SECRET\\\"\"]",
		)
		extra += `
variable "drill_secret" {
  type      = string
  sensitive = true
}
`
	}
	edit("debian-12-base.imgform.hcl", main...)
	edit("variables.imgform.hcl",
		`default     = ["etckeeper", "unattended-upgrades", "qemu-guest-agent", "curl", "vim-tiny"]`, `default     = []`,
		"default     = 19", "default     = 3",
	)
	if err := os.WriteFile(filepath.Join(dir, "drill.imgform.hcl"), []byte(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	vars := fmt.Sprintf("source_url      = %q\nsource_checksum = %q\n", img, "file:"+img+".SHA256SUMS")
	if o.Secret != "" {
		vars += fmt.Sprintf("drill_secret    = %q\n", o.Secret)
	}
	if err := os.WriteFile(filepath.Join(dir, "drill.auto.imgvars.hcl"), []byte(vars), 0o644); err != nil {
		t.Fatal(err)
	}
}

// drill is one drill: a configuration folder, a cache folder and the binary.
type drill struct {
	t     *testing.T
	bin   string
	img   string
	dir   string // configuration folder
	cache string // IMGFORM_CACHE_DIR
	logs  string // where every command's output is kept
	// tests lets apply and plan run the test step. Off, they get -skip-tests: the golden build tests its
	// output, and the drills about other failures need not boot it once more (a minute or two each).
	tests bool
	n     int
	mu    sync.Mutex
}

// newDrill writes the drill configuration into a new folder and gives it an empty cache.
func newDrill(t *testing.T, o drillConfigOptions) *drill {
	t.Helper()
	d := &drill{t: t, bin: drillBinary(t), img: drillImage(t)}
	base := t.TempDir()
	d.dir = filepath.Join(base, "config")
	d.cache = filepath.Join(base, "cache")
	d.logs = filepath.Join(base, "logs")
	for _, p := range []string{d.dir, d.cache, d.logs} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeDrillConfig(t, d.dir, d.img, o)
	t.Cleanup(func() {
		// A drill that failed half-way must not leave QEMU running for the next one.
		for _, p := range qemuProcesses(d.cache) {
			t.Errorf("cleanup: killing a QEMU still running on this drill's cache: %d %s", p.pid, p.cmdline)
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
		}
	})
	return d
}

// result is one finished imgform command.
type result struct {
	args           []string
	code           int // -1 when killed by a signal
	stdout, stderr string
	elapsed        time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("imgform %s: exit %d after %s", strings.Join(r.args, " "), r.code, r.elapsed.Round(100*time.Millisecond))
}

// all is stdout and stderr together, for searching.
func (r result) all() string { return r.stdout + "\n" + r.stderr }

// env is the environment of imgform: this drill's cache, TCG without the KVM probe, no colours.
func (d *drill) env(extra ...string) []string {
	env := append(os.Environ(), "IMGFORM_CACHE_DIR="+d.cache, "IMGFORM_ACCELERATOR=tcg", "NO_COLOR=1")
	return append(env, extra...)
}

// command prepares imgform args in the configuration folder.
func (d *drill) command(ctx context.Context, args []string, extraEnv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Dir = d.dir
	cmd.Env = d.env(extraEnv...)
	// imgform gets SIGTERM on timeout, like a CI job being cancelled, and SIGKILL a minute later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	return cmd
}

// run runs imgform to completion and logs a summary; the whole output goes to the drill's log folder.
func (d *drill) run(timeout time.Duration, args ...string) result {
	return d.runEnv(timeout, nil, args...)
}

func (d *drill) runEnv(timeout time.Duration, extraEnv []string, args ...string) result {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args = d.testArgs(args)
	cmd := d.command(ctx, args, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	r.code = exitCode(err)
	if ctx.Err() != nil {
		d.t.Errorf("%s: timed out after %s", r, timeout)
	}
	d.record(r)
	return r
}

// testArgs adds -skip-tests to apply and plan when the drill does not run the test step.
func (d *drill) testArgs(args []string) []string {
	if d.tests || len(args) == 0 || (args[0] != "apply" && args[0] != "plan") || hasArg(args, "-skip-tests") {
		return args
	}
	return append([]string{args[0], "-skip-tests"}, args[1:]...)
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -2
}

// record keeps a command's output in the log folder and logs its exit and the end of its output.
func (d *drill) record(r result) {
	d.mu.Lock()
	d.n++
	n := d.n
	d.mu.Unlock()
	name := filepath.Join(d.logs, fmt.Sprintf("%02d-%s", n, strings.Join(r.args[:1], "")))
	_ = os.WriteFile(name+".stdout", []byte(r.stdout), 0o644)
	_ = os.WriteFile(name+".stderr", []byte(r.stderr), 0o644)
	d.t.Logf("%s\n%s", r, indent(summarize(r), "    "))
}

// summarize keeps what is worth reading of a command's output: step results of -json applies, else the
// last lines.
func summarize(r result) string {
	var b strings.Builder
	if isJSONApply(r.args) {
		for _, e := range parseEvents(r.stdout) {
			switch e.Type {
			case "step_finished":
				fmt.Fprintf(&b, "%s: %s in %s", e.Step, e.Status, (time.Duration(e.ElapsedMs) * time.Millisecond).Round(100*time.Millisecond))
				if e.Error != "" {
					fmt.Fprintf(&b, ": %s", firstLine(e.Error))
				}
				b.WriteString("\n")
			case "message":
				fmt.Fprintf(&b, "%s: %s\n", e.Level, firstLine(e.Line))
			case "apply_finished":
				for _, o := range e.Outputs {
					fmt.Fprintf(&b, "output %s sha256 %s written=%v\n", o.Path, o.SHA256, o.Written)
				}
			}
		}
	} else if !isJSONPlan(r.args) {
		b.WriteString(lastLines(r.stdout, 12))
	}
	b.WriteString(lastLines(r.stderr, 12))
	return strings.TrimRight(b.String(), "\n")
}

func isJSONApply(args []string) bool {
	return len(args) > 0 && args[0] == "apply" && hasArg(args, "-json")
}
func isJSONPlan(args []string) bool {
	return len(args) > 0 && args[0] == "plan" && hasArg(args, "-json")
}

func hasArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func indent(s, prefix string) string {
	if s == "" {
		return prefix + "(no output)"
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// event is one line of apply -json (docs/plan-json.md).
type event struct {
	Type      string       `json:"type"`
	Step      string       `json:"step"`
	Label     string       `json:"label"`
	Status    string       `json:"status"`
	Phase     string       `json:"phase"`
	Done      int64        `json:"done"`
	Total     int64        `json:"total"`
	ElapsedMs int64        `json:"elapsed_ms"`
	Error     string       `json:"error"`
	Line      string       `json:"line"`
	Level     string       `json:"level"`
	Plan      *jsonPlan    `json:"plan"`
	Outputs   []jsonOutput `json:"outputs"`
}

type jsonOutput struct {
	Image, Name, Path, SHA256 string
	Size                      int64
	Written                   bool
}

type jsonPlan struct {
	FormatVersion int `json:"format_version"`
	Images        []struct {
		Name  string `json:"name"`
		Steps []struct {
			ID      string   `json:"id"`
			Kind    string   `json:"kind"`
			Key     string   `json:"key"`
			Action  string   `json:"action"`
			Reasons []string `json:"reasons"`
			Output  string   `json:"output"`
		} `json:"steps"`
	} `json:"images"`
	ToRun   int `json:"to_run"`
	Cached  int `json:"cached"`
	Skipped int `json:"skipped"`
}

// actions returns "step=action" for every step, in order, without the image name.
func (p *jsonPlan) actions() string {
	if p == nil {
		return "(no plan)"
	}
	var parts []string
	for _, ip := range p.Images {
		for _, s := range ip.Steps {
			parts = append(parts, strings.TrimPrefix(s.ID, ip.Name+"/")+"="+s.Action)
		}
	}
	return strings.Join(parts, " ")
}

// action returns the action of the step with the given ID.
func (p *jsonPlan) action(id string) string {
	for _, ip := range p.Images {
		for _, s := range ip.Steps {
			if s.ID == id {
				return s.Action
			}
		}
	}
	return ""
}

func parseEvents(stdout string) []event {
	var out []event
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type != "" {
			out = append(out, e)
		}
	}
	return out
}

// stepsStarted lists the steps an apply -json started, in order.
func stepsStarted(events []event) []string {
	var out []string
	for _, e := range events {
		if e.Type == "step_started" {
			out = append(out, strings.TrimPrefix(e.Step, drillImageName+"/"))
		}
	}
	return out
}

// finishedOutputs returns the outputs of the apply_finished event.
func finishedOutputs(events []event) []jsonOutput {
	for _, e := range events {
		if e.Type == "apply_finished" {
			return e.Outputs
		}
	}
	return nil
}

// plan runs plan -json and decodes it.
func (d *drill) plan() *jsonPlan {
	d.t.Helper()
	r := d.run(10*time.Minute, "plan", "-json")
	if r.code != 0 {
		d.t.Fatalf("%s\n%s", r, r.stderr)
	}
	var p jsonPlan
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		d.t.Fatalf("plan -json: %v\n%s", err, r.stdout)
	}
	d.t.Logf("plan: %s", p.actions())
	return &p
}

// applyJSON runs apply -json and returns the result and its events.
func (d *drill) applyJSON(timeout time.Duration, extra ...string) (result, []event) {
	d.t.Helper()
	r := d.run(timeout, append([]string{"apply", "-json"}, extra...)...)
	return r, parseEvents(r.stdout)
}

// verify runs cache verify (with -remove when asked).
func (d *drill) verify(remove bool) result {
	d.t.Helper()
	args := []string{"cache", "verify"}
	if remove {
		args = append(args, "-remove")
	}
	return d.run(30*time.Minute, args...)
}

// verifyClean checks that cache verify finds nothing wrong.
func (d *drill) verifyClean(when string) {
	d.t.Helper()
	r := d.verify(false)
	if r.code != 0 || !strings.Contains(r.stdout, " 0 bad") {
		d.t.Errorf("%s: cache verify is not clean: exit %d\n%s%s", when, r.code, r.stdout, r.stderr)
	}
}

// outDir is the default output folder of the drill configuration.
func (d *drill) outDir() string { return filepath.Join(d.dir, "dist") }

// checkOutputs checks an output folder: SHA256SUMS lists every output with its right digest, and the
// folder holds nothing else than the outputs, SHA256SUMS and the manifest (no temp or intermediate file).
// It returns the sha256 of the drill output.
func checkOutputs(t *testing.T, dir string) string {
	t.Helper()
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Errorf("output folder %s: %v", dir, err)
		return ""
	}
	listed := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		// Outputs of an apply -skip-tests are listed as unverified (steps/export.SumEntry).
		sum, name, ok := strings.Cut(strings.TrimPrefix(line, "# unverified: "), "  ")
		if !ok {
			t.Errorf("SHA256SUMS: malformed line %q", line)
			continue
		}
		listed[name] = sum
	}
	for name, sum := range listed {
		got, err := sha256File(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("SHA256SUMS lists %s: %v", name, err)
		} else if got != sum {
			t.Errorf("%s has sha256 %s, SHA256SUMS says %s", name, got, sum)
		}
	}
	if listed[drillOutput] == "" {
		t.Errorf("SHA256SUMS does not list %s: %q", drillOutput, sums)
	}
	checkNoStrayFiles(t, dir, listed)
	return listed[drillOutput]
}

// checkVerified checks that the test step vouched for the output: SHA256SUMS lists it as a plain line, and
// the manifest says the test passed, with every built-in check passed (dns too: the netplan image has
// systemd-resolved) and the example's own test blocks.
func checkVerified(t *testing.T, dir string) {
	t.Helper()
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil || strings.Contains(string(sums), "unverified") {
		t.Errorf("SHA256SUMS %q, %v: the output is not verified", sums, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, drillImageName+".manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Verification struct {
			Status string
			Checks []struct{ Name, Status, Detail string }
		}
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range m.Verification.Checks {
		got[c.Name] = c.Status
		if c.Status != "passed" {
			t.Errorf("check %s: %s: %s", c.Name, c.Status, c.Detail)
		}
	}
	for _, name := range []string{"boot", "cloud-init", "machine-id", "ssh-host-keys", "build-user", "network", "dns",
		"build-traces", "test motd", "test admin-user", "test packages"} {
		if got[name] == "" {
			t.Errorf("the manifest has no result of check %s: %s", name, b)
		}
	}
	if m.Verification.Status != "passed" {
		t.Errorf("verification %q", m.Verification.Status)
	}
}

// checkNoStrayFiles reports any file in dir that is not a listed output, SHA256SUMS, the manifest or a download.
func checkNoStrayFiles(t *testing.T, dir string, listed map[string]string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			t.Error(err)
		}
		return
	}
	for _, e := range entries {
		n := e.Name()
		// The example's motd provisioner downloads the guest's dpkg database into dist/ as well.
		if _, ok := listed[n]; ok || n == "SHA256SUMS" || n == drillImageName+".manifest.json" || strings.HasSuffix(n, ".dpkg-status") {
			continue
		}
		t.Errorf("stray file in the output folder %s: %s", dir, n)
	}
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// proc is a running process.
type proc struct {
	pid     int
	cmdline string
}

// qemuProcesses lists the qemu-system processes whose command line mentions dir, from /proc.
func qemuProcesses(dir string) []proc {
	var out []proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if !strings.Contains(filepath.Base(args[0]), "qemu-system") {
			continue
		}
		cl := strings.Join(args, " ")
		if strings.Contains(cl, dir) {
			out = append(out, proc{pid: pid, cmdline: cl})
		}
	}
	return out
}

// noQEMU checks that no QEMU runs on the cache, giving a dying one up to wait to go.
func noQEMU(t *testing.T, cache string, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ps := qemuProcesses(cache)
		if len(ps) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range ps {
				t.Errorf("a QEMU of this cache is still running %s after imgform ended: pid %d: %.300s", wait, p.pid, p.cmdline)
			}
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

var (
	goldenMu     sync.Mutex
	goldenCache  string
	goldenSHA    string
	goldenOutput string // the output file of the golden build
	// goldenBuild is how the golden build went, for drill 3, whose concurrent applies it is.
	goldenBuild *concurrentBuild
)

// concurrentBuild is the golden build: two applies of the drill configuration at once on one cache and a
// third of a copy of it in another folder, its source served over loopback HTTP so that downloads can be
// counted. Drill 3 checks how they went; the other drills start from copies of its cache. (One full build
// serves both, instead of one each: about 5 minutes of CI.)
type concurrentBuild struct {
	dir, copyDir, cache, logs string
	runs                      []*concurrentRun
	downloads                 int
}

type concurrentRun struct {
	name string
	dir  string
	r    result
	ev   []event
}

// golden returns a cache folder holding a complete build of the drill configuration, built once per test
// run by the first drill that asks, and the sha256 of the output that build wrote.
func golden(t *testing.T) (string, string) {
	t.Helper()
	goldenMu.Lock()
	defer goldenMu.Unlock()
	if goldenCache != "" {
		return goldenCache, goldenSHA
	}
	d := &drill{t: t, bin: drillBinary(t), img: drillImage(t), tests: true}
	base := filepath.Join(drillRoot, "golden")
	d.dir, d.cache, d.logs = filepath.Join(base, "config"), filepath.Join(base, "cache"), filepath.Join(base, "logs")
	_ = os.RemoveAll(base)
	for _, p := range []string{d.dir, d.cache, d.logs} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeDrillConfig(t, d.dir, d.img, drillConfigOptions{})
	b := &concurrentBuild{dir: d.dir, copyDir: filepath.Join(base, "copy"), cache: d.cache, logs: d.logs}
	// The source is served only while the build runs (the server ends with the test that asked first):
	// afterwards both folders point at the local image again, which has the same checksum and so the same keys.
	varsFile := filepath.Join(d.dir, "drill.auto.imgvars.hcl")
	localVars, err := os.ReadFile(varsFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, dir := range []string{b.dir, b.copyDir} {
			if err := os.WriteFile(filepath.Join(dir, "drill.auto.imgvars.hcl"), localVars, 0o644); err != nil {
				t.Error(err)
			}
		}
	}()
	var mu sync.Mutex
	d.serveSource(t, func(w http.ResponseWriter, r *http.Request, path string) {
		if r.Method == http.MethodGet {
			mu.Lock()
			b.downloads++
			mu.Unlock()
		}
		http.ServeFile(w, r, path)
	})
	if out, err := exec.Command("cp", "-r", d.dir, b.copyDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	d2 := d.withDir(t, b.copyDir)
	d2.tests = true
	b.runs = []*concurrentRun{{name: "A1", dir: d.dir}, {name: "A2", dir: d.dir}, {name: "B", dir: b.copyDir}}
	var wg sync.WaitGroup
	for i, r := range b.runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 200 * time.Millisecond) // the same second, not the same instant
			rd := d
			if r.dir == b.copyDir {
				rd = d2
			}
			r.r, r.ev = rd.applyJSON(60 * time.Minute)
		}()
	}
	wg.Wait()
	for _, r := range b.runs {
		if r.r.code != 0 {
			t.Fatalf("the golden build (apply %s) failed: %s\n%s", r.name, r.r, r.r.stderr)
		}
	}
	sha := checkOutputs(t, d.outDir())
	checkVerified(t, d.outDir())
	if t.Failed() {
		t.FailNow()
	}
	goldenCache, goldenSHA, goldenOutput, goldenBuild = d.cache, sha, filepath.Join(d.outDir(), drillOutput), b
	return goldenCache, goldenSHA
}

// useGolden replaces the drill's empty cache with a copy of the golden cache. The copy has every step's
// object but no record for this configuration folder, so the first plan runs only the export.
func (d *drill) useGolden() string {
	d.t.Helper()
	src, sha := golden(d.t)
	if err := os.RemoveAll(d.cache); err != nil {
		d.t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, d.cache).CombinedOutput(); err != nil {
		d.t.Fatalf("cp -a: %v %s", err, out)
	}
	return sha
}

// object is a committed object of the cache, from its meta.json.
type object struct {
	Key   string `json:"key"`
	Kind  string `json:"kind"`
	Image string `json:"image"`
	Step  string `json:"step"`
	Files []struct {
		Name   string `json:"name"`
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"files"`
	dir string
}

func (o object) path(name string) string { return filepath.Join(o.dir, "data", name) }

// objects reads the meta.json of every committed object of the cache.
func (d *drill) objects() map[string]object {
	d.t.Helper()
	out := map[string]object{}
	metas, _ := filepath.Glob(filepath.Join(d.cache, "objects", "*", "*", "meta.json"))
	for _, m := range metas {
		b, err := os.ReadFile(m)
		if err != nil {
			d.t.Fatal(err)
		}
		var o object
		if err := json.Unmarshal(b, &o); err != nil {
			d.t.Fatalf("%s: %v", m, err)
		}
		o.dir = filepath.Dir(m)
		out[o.Step] = o
	}
	return out
}

// tempLeftovers lists what interrupted writes left in the cache's objects folder.
func (d *drill) tempLeftovers() []string {
	var out []string
	for _, pat := range []string{".tmp-*", ".del-*"} {
		m, _ := filepath.Glob(filepath.Join(d.cache, "objects", "*", pat))
		out = append(out, m...)
	}
	return out
}

// sudo-free root helpers: the drills run as root (loop devices, tmpfs).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this drill needs root (mount, losetup)")
	}
}

func runCmd(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// serveSource serves the drill's source image and its sums file from a loopback HTTP server, the image
// through serveImage, and points the drill configuration at them (drill.auto.imgvars.hcl). The server
// stops when the test ends.
func (d *drill) serveSource(t *testing.T, serveImage func(w http.ResponseWriter, r *http.Request, path string)) {
	t.Helper()
	sums, err := os.ReadFile(d.img + ".SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(d.img)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/images/SHA256SUMS":
			_, _ = w.Write(sums)
		case "/images/" + name:
			serveImage(w, r, d.img)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	vars := fmt.Sprintf("source_url      = %q\nsource_checksum = %q\n", srv.URL+"/images/"+name, "file:"+srv.URL+"/images/SHA256SUMS")
	if err := os.WriteFile(filepath.Join(d.dir, "drill.auto.imgvars.hcl"), []byte(vars), 0o644); err != nil {
		t.Fatal(err)
	}
}

package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/kinds"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
)

// The engine tests run real cheap steps: a source served over loopback HTTP through go-getter (or a local
// file), the real seed ISO, real qcow2 layers made with qemu-img and written with qemu-io, and the real
// export. Only the guest is replaced: layerGuest writes each provisioner's bytes into its layer instead of
// booting a VM, so the tests exercise the graph, keys, cache and resume logic in seconds. The QEMU runner
// has its own end-to-end tests.

func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run scripts/install-deps.sh (as root)", tool)
		}
	}
}

// makeDisk writes a small raw disk with an MBR boot signature and some content.
func makeDisk(t *testing.T, path string, fill byte) string {
	t.Helper()
	b := make([]byte, 4<<20)
	for i := 4096; i < 8192; i++ {
		b[i] = fill
	}
	b[510], b[511] = 0x55, 0xAA
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// serveDir serves a folder over loopback HTTP and counts the requests per path.
func serveDir(t *testing.T, dir string) (*httptest.Server, *requestCounter) {
	t.Helper()
	rc := &requestCounter{n: map[string]int{}}
	fs := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.add(r.URL.Path)
		fs.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, rc
}

type requestCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (rc *requestCounter) add(p string) {
	rc.mu.Lock()
	rc.n[p]++
	rc.mu.Unlock()
}

func (rc *requestCounter) get(p string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.n[p]
}

// layerGuest stands in for the VM: per step it makes a real qcow2 layer over the previous one and writes a
// pattern derived from the step's key into it, so a changed step changes the disk and the export.
type layerGuest struct {
	mu       sync.Mutex
	sessions [][]string // step IDs per session
	failAt   string     // step ID that fails
	starts   atomic.Int32
	// tests counts the test steps run; failCheck names a check the tests fail.
	tests     atomic.Int32
	failCheck string
}

// Test stands in for booting the final layer: it checks what the engine hands over (a real, readable qcow2
// layer in the store, the build key, the build's host keys and machine-id, an empty work folder) and reports
// two checks, failing failCheck.
func (g *layerGuest) Test(ctx context.Context, job *step.TestJob) (*step.TestReport, error) {
	g.tests.Add(1)
	if err := run(ctx, job.WorkDir, "qemu-img", "info", "-f", job.Disk.Format, "--force-share", job.Disk.Path); err != nil {
		return nil, err
	}
	if !strings.Contains(string(job.BuildKey), "OPENSSH PRIVATE KEY") || len(job.BuildHostKeys) == 0 || job.BuildMachineID != "machine-id-of-build" {
		return nil, fmt.Errorf("build identity not handed over: key %d bytes, host keys %q, machine-id %q", len(job.BuildKey), job.BuildHostKeys, job.BuildMachineID)
	}
	if entries, err := os.ReadDir(job.WorkDir); err != nil || len(entries) != 0 {
		return nil, fmt.Errorf("work folder not empty: %v %v", entries, err)
	}
	r := &step.TestReport{}
	var failed []string
	for _, name := range []string{"cloud-init", "network"} {
		c := step.CheckResult{Name: name, Status: step.CheckPassed}
		if name == g.failCheck {
			c.Status, c.Detail = step.CheckFailed, "it fails here"
			failed = append(failed, name)
		}
		job.Output("check " + name + ": " + c.Status)
		r.Checks = append(r.Checks, c)
	}
	if len(failed) > 0 {
		return r, fmt.Errorf("the new instance failed check(s) %s", strings.Join(failed, ", "))
	}
	return r, nil
}

func (g *layerGuest) RunSession(ctx context.Context, job *step.SessionJob) error {
	g.starts.Add(1)
	var ids []string
	for _, s := range job.Steps {
		ids = append(ids, s.Addr.ID())
	}
	g.mu.Lock()
	g.sessions = append(g.sessions, ids)
	g.mu.Unlock()
	_, firstBoot := job.Steps[0].Kind.(step.Booter)
	var seedObj *state.Object
	for _, o := range job.Uses {
		if _, err := os.Stat(o.Path(step.SeedFile)); err == nil {
			seedObj = o
		}
	}
	if seedObj == nil {
		return fmt.Errorf("no seed handed over")
	}
	keyFrom := job.BaseObject
	if firstBoot {
		keyFrom = seedObj
	}
	buildKey, err := os.ReadFile(keyFrom.Path(step.BuildKeyFile))
	if err != nil || !strings.Contains(string(buildKey), "OPENSSH PRIVATE KEY") {
		return fmt.Errorf("no build key handed over: %v", err)
	}
	hostKeys, _ := os.ReadFile(job.BaseObject.Path(step.HostKeysFile))
	if firstBoot {
		hostKeys = []byte("ssh-ed25519 AAAAhostkey-of-" + job.Steps[0].Addr.ID() + "\n")
	} else if len(hostKeys) == 0 {
		return fmt.Errorf("no host keys recorded for a resumed build")
	}
	prev := job.Base
	for i, s := range job.Steps {
		job.Started(s)
		w, err := job.Begin(s)
		if err != nil {
			return err
		}
		for name, data := range map[string][]byte{step.HostKeysFile: hostKeys, step.MachineIDFile: []byte("machine-id-of-build\n"), step.BuildKeyFile: buildKey} {
			if err := w.WriteFile(name, data, 0o644); err != nil {
				return err
			}
		}
		layer := filepath.Join(w.Dir(), step.LayerFile)
		rel, err := filepath.Rel(w.Dir(), prev.Path)
		if err != nil {
			return err
		}
		args := []string{"create", "-q", "-f", "qcow2", "-F", prev.Format, "-b", rel, layer}
		if firstBoot && i == 0 && job.Image.Machine.DiskSize != 0 {
			args = append(args, fmt.Sprint(int64(job.Image.Machine.DiskSize)))
		}
		if err := run(ctx, w.Dir(), "qemu-img", args...); err != nil {
			return fmt.Errorf("%v: %w", w.Abort(), err)
		}
		pattern := fmt.Sprintf("0x%s", s.Key.String()[:2])
		offset := (i + 1 + len(s.Addr.ID())) * 65536
		if err := run(ctx, w.Dir(), "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P %s %d 65536", pattern, offset), layer); err != nil {
			return fmt.Errorf("%v: %w", w.Abort(), err)
		}
		job.Output(s, "wrote "+pattern)
		// What a guest step copies out of the guest is kept in its layer's object (GuestEnv.Keep).
		if dk, ok := s.Kind.(step.Downloader); ok {
			for _, dl := range dk.Downloads(s) {
				if err := w.WriteFile(dl.File, []byte(guestFile(dl.Source, s.Key)), 0o644); err != nil {
					return err
				}
			}
		}
		if s.Addr.ID() == g.failAt {
			return fmt.Errorf("step %s failed on purpose: %v", s.Addr.ID(), w.Abort())
		}
		final := w.FinalPath(step.LayerFile)
		if err := job.Commit(s, w); err != nil {
			return err
		}
		prev = step.Disk{Path: final, Format: "qcow2"}
	}
	return nil
}

// guestFile is what layerGuest's guest holds at path when the step of key copies it out.
func guestFile(path string, key state.Key) string {
	return fmt.Sprintf("%s as step %s left it\n", path, key.Short())
}

func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %v: %s", name, args, err, out)
	}
	return nil
}

// recorder keeps the events an apply reported.
type recorder struct {
	NoHooks
	mu       sync.Mutex
	finished map[string]StepStatus
	errs     map[string]error
	messages []string
}

func (r *recorder) StepFinished(s *StepPlan, status StepStatus, _ time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished[s.ID] = status
	if err != nil {
		r.errs[s.ID] = err
	}
}

func (r *recorder) Message(_ Level, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, text)
}

// ran lists the steps that ran to completion, sorted.
func (r *recorder) ran() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, st := range r.finished {
		if st == StatusDone {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func newRecorder() *recorder {
	return &recorder{finished: map[string]StepStatus{}, errs: map[string]error{}}
}

type testEnv struct {
	t     *testing.T
	dir   string // configuration folder
	store *state.Store
	guest *layerGuest
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	requireTools(t)
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{t: t, dir: t.TempDir(), store: st, guest: &layerGuest{}}
}

func (te *testEnv) write(name, content string) {
	te.t.Helper()
	p := filepath.Join(te.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		te.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		te.t.Fatal(err)
	}
}

func (te *testEnv) load(vars ...config.VarArg) *config.Config {
	te.t.Helper()
	cfg, diags := config.Load(te.dir, config.LoadOptions{Env: []string{}, Vars: vars})
	if diags.HasErrors() {
		te.t.Fatal(diags.Error())
	}
	return cfg
}

func (te *testEnv) engine(h Hooks) *Engine {
	return &Engine{Store: te.store, Kinds: kinds.All(), Machines: te.guest, Hooks: h, Parallelism: 2}
}

func (te *testEnv) plan(cfg *config.Config) *Plan {
	te.t.Helper()
	p, err := te.engine(nil).Plan(context.Background(), cfg)
	if err != nil {
		te.t.Fatal(err)
	}
	return p
}

func (te *testEnv) apply(cfg *config.Config) (*Result, *recorder, error) {
	te.t.Helper()
	rec := newRecorder()
	res, err := te.engine(rec).Apply(context.Background(), cfg)
	return res, rec, err
}

// actions returns "id=action" for every step, in plan order.
func actions(p *Plan) []string {
	var out []string
	for _, ip := range p.Images {
		for _, sp := range ip.Steps {
			out = append(out, sp.ID+"="+string(sp.Action))
		}
	}
	return out
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sibling is another configuration folder on the same cache, with its own guest: a second apply of the
// same images that shares every key with te's but not its record lock.
func (te *testEnv) sibling() *testEnv {
	te.t.Helper()
	return &testEnv{t: te.t, dir: te.t.TempDir(), store: te.store, guest: &layerGuest{}}
}

// lockWaits is a recorder that also sends the name of each lock its apply starts to wait for ("object
// 3fa9c2e81b0d"). Sends that find the channel full are dropped.
type lockWaits struct {
	*recorder
	names chan string
}

func newLockWaits() lockWaits {
	return lockWaits{recorder: newRecorder(), names: make(chan string, 64)}
}

func (r lockWaits) Message(level Level, text string) {
	r.recorder.Message(level, text)
	name, ok := strings.CutPrefix(text, "waiting for lock on ")
	if !ok {
		return
	}
	name, _, _ = strings.Cut(name, " held by ")
	select {
	case r.names <- name:
	default:
	}
}

// mustKey parses a key as the plan shows it.
func mustKey(t *testing.T, s string) state.Key {
	t.Helper()
	k, err := state.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

package vm

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/ssh"
)

// This file holds the fakes of the session tests: a machine that records what the session asks of it, guest
// kinds whose runs the tests script, and a session job wired to a real store the way
// internal/engine/run_guest.go wires it. Layers are real qcow2 files, so qemu-img must be installed.

// Test values the fakes hand out; every committed layer must carry them.
const (
	seedKey      = "SEED BUILD KEY"
	cachedKey    = "CACHED LAYER BUILD KEY"
	cachedHost   = "CACHED HOST KEYS"
	fakeHostKeys = "ssh-ed25519 AAAAfake"
	fakeID       = "0123456789abcdef0123456789abcdef"
	baseSize     = 4 << 20
	diskSize     = 8 << 20
	shutdownWait = 7 * time.Second
)

// events is the one ordered log that the machine, the kinds and the job's callbacks write to, so that a test
// can check the order of everything a session did.
type events struct {
	mu  sync.Mutex
	all []string
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, fmt.Sprintf(format, args...))
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.all)
}

// fakeMachine stands for QEMU with an SSH login. A command, a snapshot or a stop fails when fail holds an
// error for it: "sh <command>", "snapshot" or "stop".
type fakeMachine struct {
	ev        *events
	fail      map[string]error
	hostKeys  []byte
	machineID string
	// layerOf names the step whose layer file path is, for the log.
	layerOf func(path string) string

	mu    sync.Mutex
	stops []stopCall
}

type stopCall struct {
	timeout   time.Duration
	powersOff bool
}

var _ machine = (*fakeMachine)(nil)

func (m *fakeMachine) Run(ctx context.Context, cmd string, opts ssh.RunOptions) (int, error) {
	what := "sh " + cmd
	if opts.Sudo {
		what += " (sudo)"
	}
	m.ev.add("%s", what)
	if err := ctx.Err(); err != nil {
		return -1, err
	}
	if err := m.fail["sh "+cmd]; err != nil {
		return -1, err
	}
	return 0, nil
}

func (m *fakeMachine) Upload(context.Context, io.Reader, string, ssh.UploadOptions) error {
	return errors.New("fake machine: no uploads")
}

func (m *fakeMachine) UploadFile(context.Context, string, string, ssh.UploadOptions) error {
	return errors.New("fake machine: no uploads")
}

func (m *fakeMachine) Snapshot(_ context.Context, path string) error {
	m.ev.add("snapshot %s", m.layerOf(path))
	return m.fail["snapshot"]
}

func (m *fakeMachine) Stop(_ context.Context, timeout time.Duration, powersOff bool) error {
	m.mu.Lock()
	m.stops = append(m.stops, stopCall{timeout, powersOff})
	m.mu.Unlock()
	m.ev.add("stop powersOff=%t", powersOff)
	return m.fail["stop"]
}

func (m *fakeMachine) Kill() { m.ev.add("kill") }

func (m *fakeMachine) Pause(context.Context) error {
	m.ev.add("pause")
	return m.fail["pause"]
}

func (m *fakeMachine) Continue(context.Context) error {
	m.ev.add("continue")
	return m.fail["continue"]
}

// SettleMemory reports 1 MiB handed back; "settle memory" fails it.
func (m *fakeMachine) SettleMemory(context.Context) (int64, time.Duration, error) {
	m.ev.add("settle memory")
	return 1 << 20, time.Second, m.fail["settle memory"]
}

// SaveState writes a state that names the machine's fake fingerprint; "save state" fails it before the
// stop, "save state after the stop" after atStop.
func (m *fakeMachine) SaveState(_ context.Context, w io.Writer, atStop func() error) (int64, string, error) {
	m.ev.add("save state")
	if err := m.fail["save state"]; err != nil {
		return 0, "", err
	}
	if err := atStop(); err != nil {
		return 0, "", err
	}
	if err := m.fail["save state after the stop"]; err != nil {
		return 0, "", err
	}
	n, err := io.WriteString(w, "fake VM state")
	return int64(n), "fake-fingerprint", err
}

func (m *fakeMachine) Describe() string { return "fake machine" }

func (m *fakeMachine) Login(dir string) (string, error) {
	m.ev.add("login")
	return "ssh fake " + dir, m.fail["login"]
}

func (m *fakeMachine) Interactive(context.Context, ssh.Terminal) (int, error) {
	m.ev.add("interactive")
	return 0, m.fail["interactive"]
}

func (m *fakeMachine) HostKeys() []byte  { return m.hostKeys }
func (m *fakeMachine) MachineID() string { return m.machineID }

// guestKind is a guest step kind whose run the test scripts; by default it runs "work <step name>" in the
// guest and prints one line.
type guestKind struct {
	name string
	run  func(ctx context.Context, g *step.GuestEnv, s *step.Step) error
}

var _ step.GuestKind = guestKind{}

func (k guestKind) Name() string                          { return k.name }
func (guestKind) Version() int                            { return 1 }
func (guestKind) Class() step.Class                       { return step.Guest }
func (guestKind) Instances(*config.Image) []step.Instance { return nil }
func (guestKind) Key(context.Context, *step.KeyContext, *step.Step, *step.KeyBuilder) error {
	return nil
}

func (k guestKind) RunGuest(ctx context.Context, g *step.GuestEnv, s *step.Step) error {
	if k.run != nil {
		return k.run(ctx, g, s)
	}
	return work(ctx, g, s)
}

// work is what a step does by default: one command in the guest and one line of output.
func work(ctx context.Context, g *step.GuestEnv, s *step.Step) error {
	code, err := g.Shell.Run(ctx, "work "+s.Addr.Name, ssh.RunOptions{})
	if err == nil && code != 0 {
		err = fmt.Errorf("exit status %d", code)
	}
	if err == nil {
		g.Output("worked in " + g.ConfigDir + " as " + g.BuildUser)
	}
	return err
}

// bootKind starts a layer chain (boot) when starts is set.
type bootKind struct {
	guestKind
	starts bool
}

var _ step.Booter = bootKind{}

func (k bootKind) StartsChain() bool { return k.starts }

// offKind powers the guest off at its end (cleanup) when off is set.
type offKind struct {
	guestKind
	off bool
}

var _ step.PowerOffer = offKind{}

func (k offKind) PowersOff() bool { return k.off }

// hostKind is a kind that does not run in the guest.
type hostKind struct{}

func (hostKind) Name() string                            { return "seed" }
func (hostKind) Version() int                            { return 1 }
func (hostKind) Class() step.Class                       { return step.Prepare }
func (hostKind) Instances(*config.Image) []step.Instance { return nil }
func (hostKind) Key(context.Context, *step.KeyContext, *step.Step, *step.KeyBuilder) error {
	return nil
}

// keyOf makes a store key from a name.
func keyOf(name string) state.Key { return state.Key(sha256.Sum256([]byte(name))) }

// qemuImg runs qemu-img for a fixture.
func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// commitObject commits an object under the name's key with the files given; the disk, when not "",
// is made with qemu-img in that format (raw: disk.raw, qcow2: step.LayerFile).
func commitObject(t *testing.T, st *state.Store, name, kind, disk string, files map[string]string) *state.Object {
	t.Helper()
	w, err := st.Begin(keyOf(name), state.Info{Kind: kind, Step: name})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Abort() }()
	for f, data := range files {
		if err := w.WriteFile(f, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	switch disk {
	case "raw":
		qemuImg(t, "create", "-q", "-f", "raw", filepath.Join(w.Dir(), "disk.raw"), fmt.Sprint(baseSize))
	case "qcow2":
		qemuImg(t, "create", "-q", "-f", "qcow2", filepath.Join(w.Dir(), step.LayerFile), fmt.Sprint(baseSize))
	}
	obj, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// sessionTest is a guest session under test: a job over a real store, driven by a Runner whose machine is
// fake. Change the job, the kinds or the machine before calling run.
type sessionTest struct {
	t     *testing.T
	store *state.Store
	ev    *events
	m     *fakeMachine
	seed  *state.Object
	base  *state.Object
	job   *step.SessionJob

	// specs are the boot specs the fake boot received; bootErr makes it fail.
	specs   []bootSpec
	bootErr error
	// dirs are the folders of the writers Begin opened, by step name.
	dirs map[string]string
	// commitFails makes the commit of the named step fail inside the store (the layer folder gets a
	// subfolder, which an object may not hold).
	commitFails string
}

// newSession makes a store with a committed source disk (raw) and seed, and a job over steps named a, b,
// c... with the kinds given: the first one starts from the source, each next one from the one before. The
// machine has host keys and a machine-id.
func newSession(t *testing.T, kinds ...step.Kind) *sessionTest {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatal("qemu-img is not installed: run scripts/install-deps.sh (as root)")
	}
	st, err := state.Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	s := &sessionTest{
		t: t, store: st, ev: ev,
		m:    &fakeMachine{ev: ev, fail: map[string]error{}, hostKeys: []byte(fakeHostKeys), machineID: fakeID},
		dirs: map[string]string{},
	}
	s.seed = commitObject(t, st, "seed", "seed", "", map[string]string{step.SeedFile: "iso", step.BuildKeyFile: seedKey})
	s.base = commitObject(t, st, "source", "fetch", "raw", nil)

	img := &config.Image{Name: "img", Machine: config.Machine{DiskSize: diskSize, ShutdownTimeout: shutdownWait}}
	source := &step.Step{Addr: step.Address{Image: "img", Kind: "fetch"}, Image: img, Key: keyOf("source")}
	seedStep := &step.Step{Addr: step.Address{Image: "img", Kind: "seed"}, Image: img, Key: keyOf("seed")}
	var steps []*step.Step
	parent := source
	for i, k := range kinds {
		name := string(rune('a' + i))
		sp := &step.Step{
			Addr: step.Address{Image: "img", Kind: k.Name(), Name: name}, Kind: k, Image: img,
			Parent: parent, Uses: []*step.Step{seedStep}, Key: keyOf(name),
		}
		steps = append(steps, sp)
		parent = sp
	}

	// Open writers by key, as the engine keeps them: the next layer is begun before the one below it is
	// committed.
	open := map[state.Key]*state.Writer{}
	s.job = &step.SessionJob{
		Image: img, ConfigDir: "/config", WorkDir: t.TempDir(),
		Base: step.Disk{Path: s.base.Path("disk.raw"), Format: "raw"}, BaseObject: s.base,
		Uses: []*state.Object{s.seed}, Steps: steps, Root: st.Dir(),
		Begin: func(sp *step.Step) (*state.Writer, error) {
			ev.add("begin %s", sp.Addr.Name)
			info := state.Info{Kind: sp.Addr.Kind, Image: img.Name, Step: sp.Addr.ID(), Parent: sp.Parent.Key}
			var w *state.Writer
			var err error
			if p := open[info.Parent]; p != nil {
				w, err = st.BeginAfter(sp.Key, info, p)
			} else {
				w, err = st.Begin(sp.Key, info)
			}
			if err != nil {
				return nil, err
			}
			open[sp.Key] = w
			s.dirs[sp.Addr.Name] = w.Dir()
			return w, nil
		},
		Commit: func(sp *step.Step, w *state.Writer) error {
			ev.add("commit %s", sp.Addr.Name)
			delete(open, sp.Key)
			if sp.Addr.Name == s.commitFails {
				if err := os.Mkdir(filepath.Join(w.Dir(), "junk"), 0o755); err != nil {
					return err
				}
			}
			_, err := w.Commit()
			return err
		},
		Started: func(sp *step.Step) { ev.add("started %s", sp.Addr.Name) },
		Done:    func(sp *step.Step) { ev.add("done %s", sp.Addr.Name) },
		Output:  func(sp *step.Step, line string) { ev.add("output %s: %s", sp.Addr.Name, line) },
		Progress: func(sp *step.Step, phase string, done, total int64) {
			ev.add("progress %s: %s", sp.Addr.Name, phase)
		},
		Message: func(text string) { ev.add("message: %s", text) },
		Redact:  func(s string) string { return s },
	}
	s.m.layerOf = func(path string) string {
		for name, dir := range s.dirs {
			if path == filepath.Join(dir, step.LayerFile) {
				return name
			}
		}
		return path
	}
	return s
}

// resume makes the job start from a cached layer of the same image with the files given (a qcow2 disk
// is added), as a build does whose first steps are cached.
func (s *sessionTest) resume(files map[string]string) {
	s.t.Helper()
	s.base = commitObject(s.t, s.store, "cached", "provision", "qcow2", files)
	s.job.Base = step.Disk{Path: s.base.Path(step.LayerFile), Format: "qcow2"}
	s.job.BaseObject = s.base
	s.job.Steps[0].Parent = &step.Step{Addr: step.Address{Image: "img", Kind: "provision", Name: "cached"},
		Image: s.job.Image, Key: keyOf("cached")}
}

// run runs the session with the fake machine.
func (s *sessionTest) run(ctx context.Context) error {
	r := &Runner{boot: func(ctx context.Context, spec bootSpec) (machine, error) {
		s.ev.add("boot")
		s.specs = append(s.specs, spec)
		if s.bootErr != nil {
			return nil, s.bootErr
		}
		return s.m, nil
	}}
	return r.RunSession(ctx, s.job)
}

// committed returns the stored layer of the named step, or nil when the store has none.
func (s *sessionTest) committed(name string) *state.Object {
	s.t.Helper()
	obj, ok, err := s.store.Lookup(keyOf(name))
	if err != nil {
		s.t.Fatal(err)
	}
	if !ok {
		return nil
	}
	return obj
}

// leftovers lists the folders of writes that were neither committed nor aborted, and of removals in
// progress (see the layout in state/doc.go).
func (s *sessionTest) leftovers() []string {
	s.t.Helper()
	var all []string
	for _, pattern := range []string{".tmp-*", ".del-*"} {
		m, err := filepath.Glob(filepath.Join(s.store.Dir(), "objects", "*", pattern))
		if err != nil {
			s.t.Fatal(err)
		}
		all = append(all, m...)
	}
	return all
}

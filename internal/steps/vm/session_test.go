package vm

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/step"
	"gitlab.com/imgform/imgform/internal/steps/qemu"
)

var errBoom = errors.New("boom")

func provision() guestKind { return guestKind{name: "provision"} }
func boot() bootKind       { return bootKind{guestKind{name: "boot"}, true} }

// fails runs the step's work, then fails.
func fails() guestKind {
	return guestKind{name: "provision", run: func(ctx context.Context, g *step.GuestEnv, s *step.Step) error {
		if err := work(ctx, g, s); err != nil {
			return err
		}
		return errBoom
	}}
}

// startA is the events of a session up to the end of its first step a, which is done.
var startA = []string{
	"started a", "begin a", "boot", "sh work a", "output a: worked in /config as imgform-build", "done a",
}

// syncDrop is the command that syncs and drops the page cache before a cut.
const syncDrop = "sh " + dropCaches + " (sudo)"

// cut is the events of cutting the layer of step prev (its step is done) for step next, which then runs.
func cut(prev, next string) []string {
	return []string{
		syncDrop, "begin " + next, "settle memory", "save state", "snapshot " + next, "commit " + prev,
		"started " + next, "sh work " + next, "output " + next + ": worked in /config as imgform-build",
	}
}

// TestSessionCutsLayers runs three steps and checks what the session asked of the machine and the store,
// in order, and the layer chain it left in the store.
func TestSessionCutsLayers(t *testing.T) {
	tests := map[string]struct {
		last      step.Kind
		powersOff bool     // Stop is told to wait for the guest to power off
		end       []string // the events after step c's run
	}{
		"shut down after a provisioner": {
			last: provision(),
			end:  []string{"sh sync (sudo)", "stop powersOff=false", "done c", "commit c", "kill"},
		},
		"wait for a power-off": {
			last:      offKind{guestKind{name: "cleanup"}, true},
			powersOff: true,
			end:       []string{"stop powersOff=true", "done c", "commit c", "kill"},
		},
		"shut down after a power-off kind that stays on": {
			last: offKind{guestKind{name: "cleanup"}, false},
			end:  []string{"sh sync (sudo)", "stop powersOff=false", "done c", "commit c", "kill"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newSession(t, boot(), provision(), tc.last)
			if err := s.run(t.Context()); err != nil {
				t.Fatal(err)
			}
			want := slices.Concat(startA, cut("a", "b"), []string{"done b"}, cut("b", "c"), tc.end)
			if got := s.ev.list(); !slices.Equal(got, want) {
				t.Errorf("events:\n got %q\nwant %q", got, want)
			}
			if want := []stopCall{{shutdownWait, tc.powersOff}}; !slices.Equal(s.m.stops, want) {
				t.Errorf("Stop calls %v, want %v", s.m.stops, want)
			}
			if want := filepath.Join(s.dirs["a"], step.LayerFile); len(s.specs) != 1 || s.specs[0].Disk != want {
				t.Errorf("booted %+v, want one boot on %s", s.specs, want)
			}
			checkChain(t, s, "a", "b", "c")
			if l := s.leftovers(); len(l) > 0 {
				t.Errorf("leftover folders in the store: %q", l)
			}
		})
	}
}

// checkChain checks the committed layers of the named steps, in order over the source disk: each is a
// qcow2 file of the disk size whose backing file is the layer below by its path relative to the layer's
// folder, and holds the build key, the host keys and the machine-id of the session.
func checkChain(t *testing.T, s *sessionTest, names ...string) {
	t.Helper()
	ctx := t.Context()
	below, belowFormat := s.base.Path("disk.raw"), "raw"
	var top string
	parent := s.job.Steps[0].Parent.Key
	for _, name := range names {
		obj := s.committed(name)
		if obj == nil {
			t.Fatalf("step %s: no layer in the store", name)
		}
		if obj.Parent != parent {
			t.Errorf("step %s: parent %s in the store, want %s", name, obj.Parent.Short(), parent.Short())
		}
		top = obj.Path(step.LayerFile)
		info, err := qemu.Info(ctx, top)
		if err != nil {
			t.Fatal(err)
		}
		wantBacking, err := filepath.Rel(obj.Dir(), below)
		if err != nil {
			t.Fatal(err)
		}
		if info.Format != "qcow2" || info.BackingFilename != wantBacking || info.BackingFormat != belowFormat ||
			info.VirtualSize != diskSize {
			t.Errorf("step %s: layer %+v, want qcow2 of %d bytes over %s (%s)", name, info, diskSize, wantBacking, belowFormat)
		}
		for file, want := range map[string]string{
			step.BuildKeyFile: seedKey, step.HostKeysFile: fakeHostKeys, step.MachineIDFile: fakeID + "\n",
		} {
			if got, err := os.ReadFile(obj.Path(file)); err != nil || string(got) != want {
				t.Errorf("step %s: %s is %q (%v), want %q", name, file, got, err, want)
			}
		}
		below, belowFormat, parent = top, "qcow2", obj.Key
	}
	// The relative paths lead from the top layer down to the source.
	chain, err := qemu.BackingChain(ctx, top)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, img := range chain {
		got = append(got, filepath.Clean(img.Filename))
	}
	var want []string
	for _, name := range slices.Backward(names) {
		want = append(want, s.committed(name).Path(step.LayerFile))
	}
	want = append(want, s.base.Path("disk.raw"))
	if !slices.Equal(got, want) {
		t.Errorf("backing chain\n got %q\nwant %q", got, want)
	}
}

// TestSessionFailure checks that a session that fails keeps the layers of the steps that finished, throws
// away the rest, runs no step after the failed one, kills the machine and names the failed step.
func TestSessionFailure(t *testing.T) {
	tests := map[string]struct {
		kinds     []step.Kind // default: boot, provision, provision
		setup     func(s *sessionTest)
		events    []string
		committed []string
		err       string // in the error's text
		is        error  // wrapped by the error
	}{
		"step fails": {
			kinds:     []step.Kind{boot(), fails(), provision()},
			events:    slices.Concat(startA, cut("a", "b"), []string{"kill"}),
			committed: []string{"a"},
			err:       `provision "b": boom`,
			is:        errBoom,
		},
		"last step fails": {
			kinds:     []step.Kind{boot(), provision(), fails()},
			events:    slices.Concat(startA, cut("a", "b"), []string{"done b"}, cut("b", "c"), []string{"kill"}),
			committed: []string{"a", "b"},
			err:       `provision "c": boom`,
			is:        errBoom,
		},
		"commit fails": {
			setup:  func(s *sessionTest) { s.commitFails = "a" },
			events: slices.Concat(startA, []string{syncDrop, "begin b", "settle memory", "save state", "snapshot b", "commit a", "kill"}),
			err:    `boot "a": committing the layer: commit `,
		},
		"sync before the cut fails": {
			setup:  func(s *sessionTest) { s.m.fail["sh "+dropCaches] = errBoom },
			events: slices.Concat(startA, []string{syncDrop, "kill"}),
			err:    `boot "a": sync before cutting the layer: boom`,
			is:     errBoom,
		},
		"snapshot fails": {
			setup:  func(s *sessionTest) { s.m.fail["snapshot"] = errBoom },
			events: slices.Concat(startA, []string{syncDrop, "begin b", "settle memory", "save state", "snapshot b", "kill"}),
			err:    `boot "a": boom`,
			is:     errBoom,
		},
		"sync before the shutdown fails": {
			kinds:  []step.Kind{boot()},
			setup:  func(s *sessionTest) { s.m.fail["sh sync"] = errBoom },
			events: slices.Concat(startA[:len(startA)-1], []string{"sh sync (sudo)", "kill"}),
			err:    `boot "a": sync: boom`,
			is:     errBoom,
		},
		"shutdown fails": {
			setup: func(s *sessionTest) { s.m.fail["stop"] = errBoom },
			events: slices.Concat(startA, cut("a", "b"), []string{"done b"}, cut("b", "c"),
				[]string{"sh sync (sudo)", "stop powersOff=false", "kill"}),
			committed: []string{"a", "b"},
			err:       `provision "c": shutting down the VM: boom`,
			is:        errBoom,
		},
		"boot fails": {
			setup:  func(s *sessionTest) { s.bootErr = errBoom },
			events: []string{"started a", "begin a", "boot"},
			err:    `boot "a": boom`,
			is:     errBoom,
		},
		"step does not run in the guest": {
			kinds:     []step.Kind{boot(), hostKind{}, provision()},
			events:    slices.Concat(startA, []string{syncDrop, "begin b", "settle memory", "save state", "snapshot b", "commit a", "started b", "kill"}),
			committed: []string{"a"},
			err:       `seed "b": step kind "seed" does not run in the guest`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			kinds := tc.kinds
			if kinds == nil {
				kinds = []step.Kind{boot(), provision(), provision()}
			}
			s := newSession(t, kinds...)
			if tc.setup != nil {
				tc.setup(s)
			}
			err := s.run(t.Context())
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want one with %q", err, tc.err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			if got := s.ev.list(); !slices.Equal(got, tc.events) {
				t.Errorf("events:\n got %q\nwant %q", got, tc.events)
			}
			checkStored(t, s, tc.committed)
		})
	}
}

// checkStored checks that the store holds the layers of the named steps, of no other step of the job, and
// no folder of an unfinished write.
func checkStored(t *testing.T, s *sessionTest, committed []string) {
	t.Helper()
	for _, st := range s.job.Steps {
		name := st.Addr.Name
		if got, want := s.committed(name) != nil, slices.Contains(committed, name); got != want {
			t.Errorf("step %s: layer in the store %t, want %t", name, got, want)
		}
	}
	if len(committed) > 0 {
		checkChain(t, s, committed...)
	}
	if l := s.leftovers(); len(l) > 0 {
		t.Errorf("leftover folders in the store: %q", l)
	}
}

// TestSessionCancel cancels the context while step b runs: a is kept, b thrown away, c never starts.
func TestSessionCancel(t *testing.T) {
	running := make(chan struct{})
	blocks := guestKind{name: "provision", run: func(ctx context.Context, g *step.GuestEnv, s *step.Step) error {
		if err := work(ctx, g, s); err != nil {
			return err
		}
		close(running)
		<-ctx.Done()
		return ctx.Err()
	}}
	s := newSession(t, boot(), blocks, provision())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		<-running
		cancel()
	}()
	err := s.run(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), `provision "b"`) {
		t.Errorf("error %v, want one naming provision \"b\" and wrapping context.Canceled", err)
	}
	if got, want := s.ev.list(), slices.Concat(startA, cut("a", "b"), []string{"kill"}); !slices.Equal(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
	checkStored(t, s, []string{"a"})
}

// TestSessionBootSpec checks what the machine boots with: a new chain logs in with the seed's build key and
// pins the host keys of the first boot; a chain resumed from a cached layer logs in with that layer's build
// key and pins its host keys.
// resetDisk stands for a set bootSpec.ResetDisk in the table of TestSessionBootSpec.
func resetDisk(context.Context) error { return nil }

func TestSessionBootSpec(t *testing.T) {
	cached := map[string]string{step.BuildKeyFile: cachedKey, step.HostKeysFile: cachedHost}
	tests := map[string]struct {
		first  step.Kind
		cached map[string]string // resume from a cached layer with these files
		setup  func(s *sessionTest)
		want   bootSpec // without Job and Disk
		size   int64    // of the layers
		err    string   // in the error's text; nothing is stored then
		hint   string   // also in the error's text
	}{
		"new chain": {
			first: boot(),
			want:  bootSpec{FirstBoot: true, BuildKey: []byte(seedKey)},
			size:  diskSize,
		},
		"resumed chain": {
			first:  provision(),
			cached: cached,
			want:   bootSpec{BuildKey: []byte(cachedKey), HostKeys: []byte(cachedHost), ResetDisk: resetDisk, Layer: `provision "cached"`},
			size:   baseSize,
		},
		"booter that does not start a chain": {
			first:  bootKind{guestKind{name: "boot"}, false},
			cached: cached,
			want:   bootSpec{BuildKey: []byte(cachedKey), HostKeys: []byte(cachedHost), ResetDisk: resetDisk, Layer: `provision "cached"`},
			size:   baseSize,
		},
		"new chain without a seed": {
			first: boot(),
			setup: func(s *sessionTest) { s.job.Uses = nil },
			err:   `boot "a": no seed among the results the session uses`,
		},
		"resumed chain without host keys": {
			first:  provision(),
			cached: map[string]string{step.BuildKeyFile: cachedKey},
			err:    "the cached layer img/provision/cached has no recorded host keys to pin",
			hint:   "remove it with imgform cache verify -remove",
		},
		"resumed chain without a build key": {
			first:  provision(),
			cached: map[string]string{step.HostKeysFile: cachedHost},
			err:    `provision "a": the build key of image "img"`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newSession(t, tc.first, provision())
			if tc.cached != nil {
				s.resume(tc.cached)
			}
			if tc.setup != nil {
				tc.setup(s)
			}
			err := s.run(t.Context())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.hint) {
					t.Errorf("error %v, want one with %q and %q", err, tc.err, tc.hint)
				}
				if len(s.specs) > 0 {
					t.Errorf("booted %+v after the error", s.specs)
				}
				checkStored(t, s, nil)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.specs) != 1 {
				t.Fatalf("%d boots, want 1", len(s.specs))
			}
			got := s.specs[0]
			if got.Job != s.job || got.Disk != filepath.Join(s.dirs["a"], step.LayerFile) {
				t.Errorf("booted job %p on %s, want job %p on the first layer", got.Job, got.Disk, s.job)
			}
			if filepath.Base(got.Seed) != step.SeedFile || !strings.HasPrefix(got.Seed, s.store.Dir()) {
				t.Errorf("booted with seed %q, want the seed object's %s", got.Seed, step.SeedFile)
			}
			got.Job, got.Disk, got.Seed = nil, "", ""
			if (got.ResetDisk != nil) != (tc.want.ResetDisk != nil) {
				t.Errorf("boot spec's ResetDisk set %t, want %t", got.ResetDisk != nil, tc.want.ResetDisk != nil)
			}
			got.ResetDisk, tc.want.ResetDisk = nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("boot spec %+v, want %+v", got, tc.want)
			}
			// Every layer is made with the key the session logged in with, at the size of the first one.
			for _, name := range []string{"a", "b"} {
				obj := s.committed(name)
				if obj == nil {
					t.Fatalf("step %s: no layer in the store", name)
				}
				if key, err := os.ReadFile(obj.Path(step.BuildKeyFile)); err != nil || string(key) != string(tc.want.BuildKey) {
					t.Errorf("step %s: build key %q (%v), want %q", name, key, err, tc.want.BuildKey)
				}
				info, err := qemu.Info(t.Context(), obj.Path(step.LayerFile))
				if err != nil {
					t.Fatal(err)
				}
				if info.VirtualSize != tc.size {
					t.Errorf("step %s: virtual size %d, want %d", name, info.VirtualSize, tc.size)
				}
			}
			// The first layer is over the base disk.
			a := s.committed("a")
			wantBacking, err := filepath.Rel(a.Dir(), s.job.Base.Path)
			if err != nil {
				t.Fatal(err)
			}
			info, err := qemu.Info(t.Context(), a.Path(step.LayerFile))
			if err != nil {
				t.Fatal(err)
			}
			if info.BackingFilename != wantBacking || info.BackingFormat != s.job.Base.Format {
				t.Errorf("first layer over %s (%s), want %s (%s)", info.BackingFilename, info.BackingFormat, wantBacking, s.job.Base.Format)
			}
		})
	}
}

// TestSessionWithoutHostKeys checks that a layer records no host keys or machine-id when the machine has
// none, rather than empty files.
func TestSessionWithoutHostKeys(t *testing.T) {
	s := newSession(t, boot(), provision())
	s.m.hostKeys, s.m.machineID = nil, ""
	if err := s.run(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		obj := s.committed(name)
		if obj == nil {
			t.Fatalf("step %s: no layer in the store", name)
		}
		var files []string
		for _, f := range obj.Files {
			files = append(files, f.Name)
		}
		want := []string{step.BuildKeyFile, step.LayerFile}
		if name == "a" { // cut while the VM ran: its state is saved with it
			want = append(want, stateInfoFile, stateFile)
		}
		if !slices.Equal(files, want) {
			t.Errorf("step %s: files %q, want %q", name, files, want)
		}
	}
}

// TestSessionSavedStates checks what a session does with VM states: the boot gets the saved state of the
// cached layer it starts from (or a warning when it cannot be read), and a save that fails is a warning
// that leaves the layer without a state.
func TestSessionSavedStates(t *testing.T) {
	info := `{"format_version": 1, "fingerprint": "fp", "machine": "the saving machine", "size": 13}`
	cached := map[string]string{step.BuildKeyFile: cachedKey, step.HostKeysFile: cachedHost,
		stateFile: "compressed state", stateInfoFile: info}

	t.Run("resume gets the cached layer's state", func(t *testing.T) {
		s := newSession(t, provision(), provision())
		s.resume(cached)
		if err := s.run(t.Context()); err != nil {
			t.Fatal(err)
		}
		st := s.specs[0].State
		if st == nil || st.obj != s.base || st.info.Fingerprint != "fp" || st.info.Machine != "the saving machine" {
			t.Fatalf("boot spec's state %+v, want the cached layer's", st)
		}
		if s.specs[0].ResetDisk == nil {
			t.Error("no ResetDisk for a boot after a failed resume")
		}
	})

	t.Run("unreadable description", func(t *testing.T) {
		s := newSession(t, provision(), provision())
		bad := maps.Clone(cached)
		bad[stateInfoFile] = `{"format_version": 99}`
		s.resume(bad)
		if err := s.run(t.Context()); err != nil {
			t.Fatal(err)
		}
		if s.specs[0].State != nil {
			t.Error("a state of an unknown format was handed to the boot")
		}
		if !slices.ContainsFunc(s.ev.list(), func(e string) bool {
			return strings.Contains(e, "message: ") && strings.Contains(e, "has format 99") && strings.Contains(e, "booting the layer instead")
		}) {
			t.Errorf("no warning about the state: %q", s.ev.list())
		}
	})

	for _, when := range []string{"settle memory", "save state", "save state after the stop"} {
		t.Run("failed "+when, func(t *testing.T) {
			failedSave(t, when)
		})
	}
}

// failedSave fails the fake machine's SaveState at the given point; the layer is cut either way.
func failedSave(t *testing.T, when string) {
	{
		s := newSession(t, boot(), provision())
		s.m.fail[when] = errBoom
		if err := s.run(t.Context()); err != nil {
			t.Fatal(err)
		}
		a := s.committed("a")
		if a == nil {
			t.Fatal("the layer of a was not committed")
		}
		for _, f := range []string{stateFile, stateInfoFile} {
			if _, ok := a.File(f); ok {
				t.Errorf("layer a has %s after a failed save", f)
			}
		}
		if !slices.ContainsFunc(s.ev.list(), func(e string) bool {
			return strings.Contains(e, "message: ") && strings.Contains(e, "the VM state was not saved with the layer (boom)")
		}) {
			t.Errorf("no warning about the failed save: %q", s.ev.list())
		}
		want := []string{"save state", "snapshot b"}
		switch when {
		case "save state": // before the stop: cut without a state
			want = []string{"pause", "snapshot b", "continue"}
		case "settle memory": // no save at all
			want = []string{"pause", "snapshot b", "continue"}
		}
		if got := s.ev.list(); !slices.Contains(got, "commit a") || !containsInOrder(got, want) {
			t.Errorf("events %q, want %q in order and commit a", got, want)
		}
	}
}

// containsInOrder reports whether want appears in got as a contiguous run.
func containsInOrder(got, want []string) bool {
	for i := 0; i+len(want) <= len(got); i++ {
		if slices.Equal(got[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

// TestSessionKeepOnError checks apply -on-error=keep's part: after a step fails, KeepOnError gets the step,
// its error and the login while the machine still runs; the machine is killed only once it returns.
func TestSessionKeepOnError(t *testing.T) {
	s := newSession(t, boot(), fails())
	var got []string
	s.job.KeepOnError = func(_ context.Context, failed *step.Step, err error, login string) {
		got = append(got, failed.Label(), err.Error(), login)
		s.ev.add("kept")
	}
	err := s.run(t.Context())
	if !errors.Is(err, errBoom) {
		t.Fatalf("error %v, want the step's", err)
	}
	if len(got) != 3 || got[0] != `provision "b"` || !strings.Contains(got[1], "boom") ||
		got[2] != "ssh fake "+filepath.Join(s.job.WorkDir, "login") {
		t.Errorf("KeepOnError got %q", got)
	}
	if events := s.ev.list(); !containsInOrder(events, []string{"login", "kept", "kill"}) {
		t.Errorf("events %q, want login, kept, kill at the end", events)
	}
}

// A step that handled a sensitive value (Step.Sensitive, set by the planner) leaves a layer without a VM
// state, and so does every later step of the session: the guest's memory may still hold the value. The
// layers are cut while the guest is paused, and the session says why once.
func TestSessionSavesNoStateAfterASensitiveStep(t *testing.T) {
	s := newSession(t, boot(), provision(), provision())
	s.job.Steps[1].Sensitive = true
	var messages []string
	s.job.Message = func(text string) { messages = append(messages, text) }
	if err := s.run(t.Context()); err != nil {
		t.Fatal(err)
	}
	noState := func(prev, next string) []string {
		return []string{syncDrop, "begin " + next, "pause", "snapshot " + next, "continue", "commit " + prev,
			"started " + next, "sh work " + next, "output " + next + ": worked in /config as imgform-build"}
	}
	want := slices.Concat(startA, cut("a", "b"), []string{"done b"}, noState("b", "c"))
	if got := s.ev.list(); !slices.Equal(got[:len(want)], want) {
		t.Errorf("events:\n got %q\nwant %q...", got, want)
	}
	if len(messages) != 1 || !strings.Contains(messages[0], "handled a sensitive value") {
		t.Errorf("messages %q", messages)
	}
	for name, wantState := range map[string]bool{"a": true, "b": false} {
		if _, ok := s.committed(name).File(stateFile); ok != wantState {
			t.Errorf("layer %s has a state: %v, want %v", name, ok, wantState)
		}
	}
}

// keeps writes a file through GuestEnv.Keep, as a provisioner's download does.
func keeps(name, content string) guestKind {
	return guestKind{name: "provision", run: func(ctx context.Context, g *step.GuestEnv, s *step.Step) error {
		path, err := g.Keep(name)
		if err != nil {
			return err
		}
		return os.WriteFile(path, []byte(content), 0o644)
	}}
}

// A file a step keeps (GuestEnv.Keep) is committed with that step's layer, not another's: in the middle of a
// session and in its last step, whose layer is committed after QEMU exits.
func TestSessionKeepsFilesWithTheStepsLayer(t *testing.T) {
	s := newSession(t, boot(), keeps("download-0", "from b\n"), keeps("download-0", "from c\n"))
	if err := s.run(t.Context()); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"b": "from b\n", "c": "from c\n"} {
		obj := s.committed(name)
		if obj == nil {
			t.Fatalf("no layer of %s", name)
		}
		if _, ok := obj.File("download-0"); !ok {
			t.Errorf("the object of %s does not list download-0: %+v", name, obj.Files)
		}
		if b, err := os.ReadFile(obj.Path("download-0")); err != nil || string(b) != want {
			t.Errorf("%s kept %q, %v; want %q", name, b, err, want)
		}
	}
	if _, ok := s.committed("a").File("download-0"); ok {
		t.Error("the boot layer holds a file it did not keep")
	}
}

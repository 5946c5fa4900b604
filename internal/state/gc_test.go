package state

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func keysOf(rs []Removal) []Key {
	var out []Key
	for _, r := range rs {
		out = append(out, r.Info.Key)
	}
	slices.SortFunc(out, func(a, b Key) int { return slices.Compare(a[:], b[:]) })
	return out
}

func sortedKeys(ks ...Key) []Key {
	out := slices.Clone(ks)
	slices.SortFunc(out, func(a, b Key) int { return slices.Compare(a[:], b[:]) })
	return out
}

func TestGC(t *testing.T) {
	// Every case stores a, b, c (100 bytes each) used at t0, t0+1h, t0+2h, and layer (50 bytes) on top of
	// c used at t0+3h, then runs gc at t0+4h. The total is 350 bytes.
	a, b, c, layer := testKey("a"), testKey("b"), testKey("c"), testKey("layer")
	tests := map[string]struct {
		opts        GCOptions
		hold        []Key
		wantRemoved []Key
		wantHeld    []Key
	}{
		"nothing to do": {opts: GCOptions{}},
		"by age":        {opts: GCOptions{OlderThan: 150 * time.Minute}, wantRemoved: []Key{a, b}},
		"by age, all":   {opts: GCOptions{OlderThan: time.Minute}, wantRemoved: []Key{a, b, c, layer}},
		"by size":       {opts: GCOptions{MaxSize: 250}, wantRemoved: []Key{a}},
		"by size, two":  {opts: GCOptions{MaxSize: 200}, wantRemoved: []Key{a, b}},
		// c was last used through layer: the layer goes first, and c stays.
		"by size, layer": {opts: GCOptions{MaxSize: 100}, wantRemoved: []Key{a, b, layer}},
		"age then size":  {opts: GCOptions{OlderThan: 210 * time.Minute, MaxSize: 200}, wantRemoved: []Key{a, b}},
		"held object":    {opts: GCOptions{OlderThan: 150 * time.Minute}, hold: []Key{a}, wantRemoved: []Key{b}, wantHeld: []Key{a}},
		// The layer keeps its parent c: removing c would break it.
		"held layer keeps parent": {opts: GCOptions{OlderThan: time.Minute}, hold: []Key{layer},
			wantRemoved: []Key{a, b}, wantHeld: []Key{layer}},
		"held by size": {opts: GCOptions{MaxSize: 200}, hold: []Key{a}, wantRemoved: []Key{b, layer}, wantHeld: []Key{a}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st, clock := openStore(t)
			hundred := strings.Repeat("x", 100)
			for _, k := range []Key{a, b, c} {
				commit(t, st, k, Info{Kind: "fetch"}, map[string]string{"f": hundred})
				clock.Advance(time.Hour)
			}
			commit(t, st, layer, Info{Kind: "disk", Parent: c}, map[string]string{"disk.qcow2": "50 bytes" + strings.Repeat(".", 42)})
			clock.Advance(time.Hour)
			if len(tc.hold) > 0 {
				h, err := st.Hold(ctx, tc.hold...)
				if err != nil {
					t.Fatal(err)
				}
				defer func() {
					if err := h.Release(); err != nil {
						t.Error(err)
					}
				}()
			}

			rep, err := st.GC(ctx, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := keysOf(rep.Removed), sortedKeys(tc.wantRemoved...); !slices.Equal(got, want) {
				t.Errorf("removed %v, want %v (report %+v)", got, want, rep)
			}
			if !slices.Equal(sortedKeys(rep.Held...), sortedKeys(tc.wantHeld...)) {
				t.Errorf("held %v, want %v", rep.Held, tc.wantHeld)
			}
			var freed int64
			for _, r := range rep.Removed {
				freed += r.Info.Size
				mustMiss(t, st, r.Info.Key)
				if _, err := os.Lstat(st.useLockPath(r.Info.Key)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("lock file of removed %s left: %v", r.Info.Key.Short(), err)
				}
			}
			if rep.Freed != freed || rep.KeptSize != 350-freed || rep.Kept != 4-len(rep.Removed) {
				t.Errorf("freed %d kept %d (%d bytes); want freed %d", rep.Freed, rep.Kept, rep.KeptSize, freed)
			}
			list, err := st.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 4-len(rep.Removed) {
				t.Errorf("List has %d objects after gc, want %d", len(list), 4-len(rep.Removed))
			}
			for _, info := range list {
				mustLookup(t, st, info.Key)
			}
		})
	}
}

func TestGCTouchKeepsObject(t *testing.T) {
	st, clock := openStore(t)
	old, used := testKey("old"), testKey("used")
	commit(t, st, old, Info{Kind: "fetch"}, map[string]string{"f": "1"})
	commit(t, st, used, Info{Kind: "fetch"}, map[string]string{"f": "2"})
	clock.Advance(48 * time.Hour)
	if err := st.Touch(used); err != nil {
		t.Fatal(err)
	}
	rep, err := st.GC(context.Background(), GCOptions{OlderThan: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(rep.Removed); !slices.Equal(got, []Key{old}) {
		t.Fatalf("removed %v, want only %s", got, old.Short())
	}
	if !strings.HasPrefix(rep.Removed[0].Reason, "unused since 2026-11-02 10:00:00") {
		t.Errorf("reason = %q", rep.Removed[0].Reason)
	}
	mustLookup(t, st, used)
}

func TestGCDryRun(t *testing.T) {
	st, clock := openStore(t)
	key := testKey("old")
	commit(t, st, key, Info{Kind: "fetch"}, map[string]string{"f": "1"})
	clock.Advance(48 * time.Hour)
	rep, err := st.GC(context.Background(), GCOptions{OlderThan: time.Hour, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 1 {
		t.Fatalf("dry run reported %+v, want one removal", rep.Removed)
	}
	mustLookup(t, st, key)
}

func TestGCRemovesDamaged(t *testing.T) {
	st, _ := openStore(t)
	parent := commit(t, st, testKey("parent"), Info{Kind: "fetch"}, map[string]string{"f": "base"})
	child := commit(t, st, testKey("child"), Info{Kind: "disk", Parent: parent.Key}, map[string]string{"f": "layer"})
	if err := os.Remove(parent.Path("f")); err != nil {
		t.Fatal(err)
	}
	list, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range list {
		if info.Problem == "" {
			t.Errorf("List: %s has no problem", info.Key.Short())
		}
	}
	rep, err := st.GC(context.Background(), GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(rep.Removed), sortedKeys(parent.Key, child.Key); !slices.Equal(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
	for _, r := range rep.Removed {
		if !strings.HasPrefix(r.Reason, "damaged: ") {
			t.Errorf("reason = %q", r.Reason)
		}
	}
}

// TestGCSkipsObjectHeldByProcess: another process's Hold keeps gc away until that process ends.
func TestGCSkipsObjectHeldByProcess(t *testing.T) {
	ctx := context.Background()
	st, clock := openStore(t)
	key := testKey("in use")
	commit(t, st, key, Info{Kind: "disk"}, map[string]string{"disk.qcow2": "layer"})
	clock.Advance(30 * 24 * time.Hour)

	h := startHelper(t, "hold", st.Dir(), key)
	h.expect(t, "held")
	rep, err := st.GC(ctx, GCOptions{OlderThan: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Removed) != 0 || !slices.Equal(rep.Held, []Key{key}) {
		t.Fatalf("GC while held: removed %+v, held %v", rep.Removed, rep.Held)
	}
	mustLookup(t, st, key)
	// Verify with removal leaves held objects alone too, even damaged ones.
	obj := mustLookup(t, st, key)
	if err := os.Chmod(obj.Path("disk.qcow2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(obj.Path("disk.qcow2"), []byte("LAYER"), 0o644); err != nil {
		t.Fatal(err)
	}
	vrep, err := st.VerifyAll(ctx, VerifyOptions{Remove: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(vrep.Bad) != 1 || len(vrep.Removed) != 0 || !slices.Equal(vrep.Held, []Key{key}) {
		t.Fatalf("VerifyAll while held: %+v", vrep)
	}

	h.finish(t)
	rep, err = st.GC(ctx, GCOptions{OlderThan: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := keysOf(rep.Removed); !slices.Equal(got, []Key{key}) || len(rep.Held) != 0 {
		t.Fatalf("GC after release: removed %v, held %v", got, rep.Held)
	}
}

func TestGCRemovesStaleLockFiles(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t)
	stale, busy, kept := testKey("failed build"), testKey("building"), testKey("kept")
	commit(t, st, kept, Info{Kind: "fetch"}, map[string]string{"f": "x"})
	for _, k := range []Key{stale, kept} {
		l, err := st.LockKey(ctx, k, LockOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
	l, err := st.LockKey(ctx, busy, LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Unlock(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := st.GC(ctx, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	exists := func(k Key) bool { _, err := os.Lstat(st.buildLockPath(k)); return err == nil }
	if exists(stale) || !exists(busy) || !exists(kept) {
		t.Errorf("lock files left: stale %v busy %v kept %v; want false true true", exists(stale), exists(busy), exists(kept))
	}
}

func TestList(t *testing.T) {
	st, clock := openStore(t)
	first := commit(t, st, testKey("first"), Info{Kind: "fetch", Image: "debian-12-base", Step: "fetch"}, map[string]string{"f": "12345"})
	clock.Advance(time.Hour)
	second := commit(t, st, testKey("second"), Info{Kind: "disk", Image: "debian-12-base", Step: "boot", Parent: first.Key},
		map[string]string{"disk.qcow2": "12", "id_ed25519": "k"})
	clock.Advance(time.Hour)
	list, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Key != second.Key || list[1].Key != first.Key {
		t.Fatalf("List = %+v, want most recently used first", list)
	}
	got := list[0]
	if got.Kind != "disk" || got.Size != 3 || got.Files != 2 || got.Image != "debian-12-base" || got.Step != "boot" ||
		got.Parent != first.Key || got.Age != time.Hour || got.Problem != "" {
		t.Errorf("List[0] = %+v", got)
	}
	if list[1].Age != 2*time.Hour {
		t.Errorf("List[1].Age = %v, want 2h", list[1].Age)
	}
}

func TestGCCancelled(t *testing.T) {
	st, _ := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.GC(ctx, GCOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("GC = %v, want context.Canceled", err)
	}
}

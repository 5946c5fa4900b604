package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBeginAfter: a layer begun before its parent is committed commits after it, on exactly the parent's
// files, and refuses otherwise.
func TestBeginAfter(t *testing.T) {
	st, _ := openStore(t)
	pk, ck := testKey("layer 1"), testKey("layer 2")
	parent, err := st.Begin(pk, Info{Kind: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	child, err := st.BeginAfter(ck, Info{Kind: "disk", Parent: pk}, parent)
	if err != nil {
		t.Fatal(err)
	}
	// The child names its parent's file by the path it will have, relative to its own folder.
	rel, err := filepath.Rel(child.Dir(), parent.FinalPath("disk.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := child.WriteFile("backing", []byte(rel), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := parent.WriteFile("disk.qcow2", []byte("layer 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	pobj, err := parent.Commit()
	if err != nil {
		t.Fatal(err)
	}
	cobj, err := child.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if cobj.ParentSHA256 != pobj.SHA256 {
		t.Errorf("child's parent sum %s, want %s", cobj.ParentSHA256, pobj.SHA256)
	}
	// The relative path written before either commit resolves now.
	b, err := os.ReadFile(filepath.Join(cobj.Dir(), rel))
	if err != nil || string(b) != "layer 1" {
		t.Errorf("relative path from the child: %q, %v", b, err)
	}
	mustLookup(t, st, ck)

	t.Run("parent not committed first", func(t *testing.T) {
		p, err := st.Begin(testKey("p2"), Info{Kind: "disk"})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p.Abort() }()
		c, err := st.BeginAfter(testKey("c2"), Info{Kind: "disk", Parent: testKey("p2")}, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Commit(); err == nil || !strings.Contains(err.Error(), "not committed before its child") {
			t.Fatalf("Commit before the parent: %v", err)
		}
		mustMiss(t, st, testKey("c2"))
	})
	t.Run("parent committed by another writer", func(t *testing.T) {
		k := testKey("p3")
		p, err := st.Begin(k, Info{Kind: "disk"})
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.BeginAfter(testKey("c3"), Info{Kind: "disk", Parent: k}, p)
		if err != nil {
			t.Fatal(err)
		}
		commit(t, st, k, Info{Kind: "disk"}, map[string]string{"disk.qcow2": "the other writer's"})
		if err := p.WriteFile("disk.qcow2", []byte("ours"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Commit(); err != nil {
			t.Fatal(err) // shares the other one's object
		}
		if _, err := c.Commit(); err == nil || !strings.Contains(err.Error(), "another writer") {
			t.Fatalf("Commit on a shared parent: %v", err)
		}
	})
	t.Run("wrong parent writer", func(t *testing.T) {
		if _, err := st.BeginAfter(testKey("c4"), Info{Kind: "disk", Parent: testKey("other")}, child); err == nil {
			t.Fatal("BeginAfter with a writer of another key succeeded")
		}
	})
}

// TestWorkDirSweep: a work folder in use survives gc and sweeps; a dead process's one and a dead writer's
// temp folder are removed by the next sweep.
func TestWorkDirSweep(t *testing.T) {
	st, _ := openStore(t)
	live, err := st.NewWorkDir("vm-")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := st.NewWorkDir("vm-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead.Path(), "serial.log"), []byte("boot"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := st.Begin(testKey("half"), Info{Kind: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	// Both "die": the kernel drops their flocks, nothing is removed.
	if err := errors.Join(dead.lock.Close(), w.lock.Close()); err != nil {
		t.Fatal(err)
	}
	removed, err := st.SweepLeftovers()
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 {
		t.Fatalf("swept %v, want the dead work folder and temp folder", removed)
	}
	for _, dir := range []string{dead.Path(), w.tmp} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", dir, err)
		}
	}
	if _, err := os.Stat(live.Path()); err != nil {
		t.Fatalf("the live work folder was removed: %v", err)
	}
	rep, err := st.GC(context.Background(), GCOptions{})
	if err != nil || rep.Writing != 1 || len(rep.RemovedTemp) != 0 {
		t.Fatalf("GC with a live work folder: %+v, %v", rep, err)
	}
	if err := live.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Remove left %s: %v", live.Path(), err)
	}
}

package state

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCommitLookup(t *testing.T) {
	st, clock := openStore(t)
	key := testKey("seed")
	mustMiss(t, st, key)

	info := Info{Kind: "seed", Image: "debian-12-base", Step: "seed", Attrs: map[string]string{"format": "iso"}}
	obj := commit(t, st, key, info, map[string]string{"seed.iso": "cidata"})

	got := mustLookup(t, st, key)
	if got.Kind != "seed" || got.Image != "debian-12-base" || got.Step != "seed" || got.Attrs["format"] != "iso" {
		t.Errorf("metadata = %+v", got.Meta)
	}
	if got.SHA256 != obj.SHA256 || got.Size != int64(len("cidata")) || !got.Created.Equal(clock.Now()) {
		t.Errorf("Lookup = %+v, Commit = %+v", got.Meta, obj.Meta)
	}
	if !got.LastUsed.Equal(clock.Now()) {
		t.Errorf("LastUsed = %v, want %v", got.LastUsed, clock.Now())
	}
	b, err := os.ReadFile(got.Path("seed.iso"))
	if err != nil || string(b) != "cidata" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
	if fi, err := os.Stat(got.Path("seed.iso")); err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("committed file mode = %v, %v; want read-only", fi.Mode(), err)
	}
	if !filepath.IsAbs(got.Path("seed.iso")) {
		t.Errorf("Path is not absolute: %s", got.Path("seed.iso"))
	}

	clock.Advance(time.Hour)
	if err := st.Touch(key); err != nil {
		t.Fatal(err)
	}
	if got := mustLookup(t, st, key); !got.LastUsed.Equal(clock.Now()) {
		t.Errorf("after Touch LastUsed = %v, want %v", got.LastUsed, clock.Now())
	}
	if err := st.Verify(context.Background(), got); err != nil {
		t.Errorf("Verify: %v", err)
	}

	// A store opened again in the same folder sees the object.
	again, err := Open(st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	mustLookup(t, again, key)
}

func TestObjectWithSeveralFiles(t *testing.T) {
	st, _ := openStore(t)
	parent := commit(t, st, testKey("base"), Info{Kind: "fetch"}, map[string]string{"disk.qcow2": "base"})
	key := testKey("layer")
	w, err := st.Begin(key, Info{Kind: "disk", Parent: parent.Key})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := w.Abort(); err != nil {
			t.Error(err)
		}
	}()
	if err := w.WriteFile("disk.qcow2", []byte("overlay"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile("id_ed25519", []byte("PRIVATE"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A relative path from the writer's folder to another object stays right after the rename.
	rel, err := filepath.Rel(w.Dir(), parent.Path("disk.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	obj := mustLookup(t, st, key)
	if obj.Parent != parent.Key || len(obj.Files) != 2 || obj.Size != int64(len("overlay")+len("PRIVATE")) {
		t.Fatalf("metadata = %+v", obj.Meta)
	}
	if obj.SHA256 != ObjectDigest(obj.Files) {
		t.Errorf("SHA256 %s does not cover the files", obj.SHA256)
	}
	if fi, err := os.Stat(obj.Path("id_ed25519")); err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("key file mode = %v, %v; want 0400", fi.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(obj.Dir(), rel)); err != nil || string(b) != "base" {
		t.Errorf("relative path %s from the object = %q, %v", rel, b, err)
	}
	for _, f := range obj.Files {
		r, err := obj.Open(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			t.Errorf("reading %s: %v", f.Name, err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := obj.Open("missing"); err == nil {
		t.Error("Open of a file the object does not have succeeded")
	}
}

func TestWriterErrors(t *testing.T) {
	st, _ := openStore(t)
	tests := map[string]struct {
		key   Key
		info  Info
		setup func(w *Writer) error
	}{
		"zero key": {key: Key{}, info: Info{Kind: "disk"}},
		"no kind":  {key: testKey("a"), info: Info{}},
		"big attrs": {key: testKey("a"), info: Info{Kind: "disk",
			Attrs: map[string]string{"x": strings.Repeat("y", maxAttrsBytes)}}},
		"folder in object": {key: testKey("b"), info: Info{Kind: "disk"}, setup: func(w *Writer) error {
			return os.Mkdir(filepath.Join(w.Dir(), "sub"), 0o755)
		}},
		"symlink in object": {key: testKey("c"), info: Info{Kind: "disk"}, setup: func(w *Writer) error {
			return os.Symlink("/etc/passwd", filepath.Join(w.Dir(), "link"))
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w, err := st.Begin(tc.key, tc.info)
			if tc.setup == nil {
				if err == nil {
					t.Fatal("Begin succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.setup(w); err != nil {
				t.Fatal(err)
			}
			if _, err := w.Commit(); err == nil {
				t.Fatal("Commit succeeded")
			}
			if _, err := os.Stat(w.tmp); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("failed Commit left its temp folder: %v", err)
			}
			mustMiss(t, st, tc.key)
		})
	}
	for _, name := range []string{"", ".", "..", "a/b", "a\nb"} {
		w, err := st.Begin(testKey("names"), Info{Kind: "disk"})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFile(name, nil, 0o644); err == nil {
			t.Errorf("WriteFile(%q) succeeded", name)
		}
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAbort(t *testing.T) {
	st, _ := openStore(t)
	key := testKey("aborted")
	w, err := st.Begin(key, Info{Kind: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile("disk.qcow2", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if _, err := w.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
	mustMiss(t, st, key)
	sc, err := st.scanObjects()
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.temps) != 0 {
		t.Errorf("Abort left temp folders %v", sc.temps)
	}
}

// TestInterruptedWrite simulates a crash between writing the files and the rename, in this process (the
// writer is dropped and its lock released as the kernel would) and in a helper process killed with SIGKILL.
func TestInterruptedWrite(t *testing.T) {
	t.Run("in process", func(t *testing.T) {
		st, _ := openStore(t)
		key := testKey("crash")
		w, err := st.Begin(key, Info{Kind: "disk"})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFile("disk.qcow2", []byte("half"), 0o644); err != nil {
			t.Fatal(err)
		}
		mustMiss(t, st, key)

		// While the writer lives, gc leaves its folder alone.
		rep, err := st.GC(context.Background(), GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.RemovedTemp) != 0 || rep.Writing != 1 {
			t.Fatalf("GC with a live writer: %+v", rep)
		}

		// The process "dies": the kernel drops its flock. Nothing is committed or aborted.
		if err := w.lock.Close(); err != nil {
			t.Fatal(err)
		}
		runtime.KeepAlive(w)
		reopened, err := Open(st.Dir())
		if err != nil {
			t.Fatal(err)
		}
		mustMiss(t, reopened, key)
		if list, err := reopened.List(); err != nil || len(list) != 0 {
			t.Fatalf("List = %v, %v; want nothing", list, err)
		}
		rep, err = reopened.GC(context.Background(), GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.RemovedTemp) != 1 || rep.RemovedTemp[0] != w.tmp {
			t.Fatalf("GC removed %v, want %s", rep.RemovedTemp, w.tmp)
		}
		if _, err := os.Stat(w.tmp); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temp folder still there: %v", err)
		}
	})
	t.Run("killed process", func(t *testing.T) {
		st, _ := openStore(t)
		key := testKey("crash")
		h := startHelper(t, "crashwrite", st.Dir(), key)
		h.expect(t, "written")
		rep, err := st.GC(context.Background(), GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Writing != 1 || len(rep.RemovedTemp) != 0 {
			t.Fatalf("GC while the helper writes: %+v", rep)
		}
		h.kill(t)
		mustMiss(t, st, key)
		rep, err = st.GC(context.Background(), GCOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.RemovedTemp) != 1 || rep.Writing != 0 {
			t.Fatalf("GC after the crash: %+v", rep)
		}
		// The key can be built normally afterwards.
		commit(t, st, key, Info{Kind: "disk"}, map[string]string{"disk.qcow2": "whole"})
		mustLookup(t, st, key)
	})
}

// TestDamagedObjects: damage that the cheap checks see makes a lookup miss; a changed byte is only seen by
// hashing, in Verify, in the verifying reader and in VerifyAll, which removes the object when asked.
func TestDamagedObjects(t *testing.T) {
	writable := func(t *testing.T, path string) {
		t.Helper()
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := map[string]struct {
		damage  func(t *testing.T, st *Store, obj *Object)
		wantHit bool
	}{
		"truncated file": {damage: func(t *testing.T, st *Store, obj *Object) {
			writable(t, obj.Path("disk.qcow2"))
			if err := os.Truncate(obj.Path("disk.qcow2"), 3); err != nil {
				t.Fatal(err)
			}
		}},
		"grown file": {damage: func(t *testing.T, st *Store, obj *Object) {
			writable(t, obj.Path("disk.qcow2"))
			f, err := os.OpenFile(obj.Path("disk.qcow2"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString("more"); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		"missing file": {damage: func(t *testing.T, st *Store, obj *Object) {
			if err := os.Remove(obj.Path("id_ed25519")); err != nil {
				t.Fatal(err)
			}
		}},
		"corrupt metadata": {damage: func(t *testing.T, st *Store, obj *Object) {
			path := filepath.Join(obj.dir, metaName)
			writable(t, path)
			if err := os.WriteFile(path, []byte(`{"format_version": 1, "key": "`), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		"empty metadata": {damage: func(t *testing.T, st *Store, obj *Object) {
			path := filepath.Join(obj.dir, metaName)
			writable(t, path)
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		"metadata of another key": {damage: func(t *testing.T, st *Store, obj *Object) {
			path := filepath.Join(obj.dir, metaName)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			writable(t, path)
			b = bytes.ReplaceAll(b, []byte(obj.Key.String()), []byte(testKey("other").String()))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		"missing parent": {damage: func(t *testing.T, st *Store, obj *Object) {
			if err := st.discard(obj.Parent); err != nil {
				t.Fatal(err)
			}
		}},
		"flipped byte": {wantHit: true, damage: func(t *testing.T, st *Store, obj *Object) {
			path := obj.Path("disk.qcow2")
			writable(t, path)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[2] ^= 0x01
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st, _ := openStore(t)
			parent := commit(t, st, testKey("parent"), Info{Kind: "fetch"}, map[string]string{"disk.qcow2": "base"})
			key := testKey("object")
			obj := commit(t, st, key, Info{Kind: "disk", Parent: parent.Key},
				map[string]string{"disk.qcow2": "a disk layer", "id_ed25519": "key"})
			tc.damage(t, st, obj)

			got, ok, err := st.Lookup(key)
			if err != nil || ok != tc.wantHit {
				t.Fatalf("Lookup = %v, %v; want hit=%v", ok, err, tc.wantHit)
			}
			if ok {
				if err := st.Verify(ctx, got); !errors.Is(err, ErrCorrupt) {
					t.Errorf("Verify = %v, want ErrCorrupt", err)
				}
				r, err := got.Open("disk.qcow2")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, r); !errors.Is(err, ErrCorrupt) {
					t.Errorf("verifying reader = %v, want ErrCorrupt", err)
				}
				if err := r.Close(); err != nil {
					t.Fatal(err)
				}
			}

			rep, err := st.VerifyAll(ctx, VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Bad) != 1 || rep.Bad[0].Info.Key != key || !errors.Is(rep.Bad[0].Err, ErrCorrupt) {
				t.Fatalf("VerifyAll found %+v, want only %s", rep.Bad, key.Short())
			}
			if len(rep.Removed) != 0 {
				t.Fatalf("VerifyAll without Remove removed %+v", rep.Removed)
			}
			rep, err = st.VerifyAll(ctx, VerifyOptions{Remove: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Removed) != 1 || rep.Removed[0].Info.Key != key {
				t.Fatalf("VerifyAll removed %+v, want %s", rep.Removed, key.Short())
			}
			if _, err := os.Lstat(obj.dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("object folder still there: %v", err)
			}
			mustMiss(t, st, key)
			if rep, err := st.VerifyAll(ctx, VerifyOptions{}); err != nil || len(rep.Bad) != 0 {
				t.Errorf("VerifyAll after removal = %+v, %v", rep, err)
			}
		})
	}
}

func TestVerifyingReaderGrownFile(t *testing.T) {
	st, _ := openStore(t)
	obj := commit(t, st, testKey("x"), Info{Kind: "export"}, map[string]string{"image.zst": "compressed"})
	path := obj.Path("image.zst")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("compressed and then some"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := obj.Open("image.zst")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := io.ReadAll(r); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "longer") {
		t.Errorf("ReadAll = %v, want a 'longer' ErrCorrupt", err)
	}
}

// TestConcurrentWritersGoroutines: many goroutines build the same key at once.
func TestConcurrentWritersGoroutines(t *testing.T) {
	const n = 16
	t.Run("GetOrBuild builds once", func(t *testing.T) {
		st, _ := openStore(t)
		key := testKey("shared")
		var builds atomic.Int32
		var wg sync.WaitGroup
		sums := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				obj, _, err := st.GetOrBuild(context.Background(), key, Info{Kind: "disk"}, LockOptions{},
					func(_ context.Context, w *Writer) error {
						builds.Add(1)
						return w.WriteFile("disk.qcow2", []byte("same"), 0o644)
					})
				if err == nil {
					sums[i] = obj.SHA256
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || sums[i] != sums[0] {
				t.Fatalf("goroutine %d: %q, %v; want %q", i, sums[i], errs[i], sums[0])
			}
		}
		if got := builds.Load(); got != 1 {
			t.Errorf("built %d times, want once", got)
		}
		if err := st.Verify(context.Background(), mustLookup(t, st, key)); err != nil {
			t.Error(err)
		}
	})
	t.Run("unlocked commits share", func(t *testing.T) {
		st, _ := openStore(t)
		key := testKey("raced")
		var wg sync.WaitGroup
		sums := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				w, err := st.Begin(key, Info{Kind: "disk"})
				if err == nil {
					err = w.WriteFile("disk.qcow2", []byte("same"), 0o644)
				}
				var obj *Object
				if err == nil {
					obj, err = w.Commit()
				}
				if err == nil {
					sums[i] = obj.SHA256
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || sums[i] != sums[0] {
				t.Fatalf("goroutine %d: %q, %v; want %q", i, sums[i], errs[i], sums[0])
			}
		}
		mustLookup(t, st, key)
		sc, err := st.scanObjects()
		if err != nil {
			t.Fatal(err)
		}
		if len(sc.temps) != 0 || len(sc.nodes) != 1 {
			t.Errorf("left %d temp folders and %d objects", len(sc.temps), len(sc.nodes))
		}
	})
}

// TestConcurrentWritersProcesses: two processes build the same key. The test holds the key's lock until
// both wait for it, so they really overlap; then one builds and the other shares its result.
func TestConcurrentWritersProcesses(t *testing.T) {
	st, _ := openStore(t)
	key := testKey("two processes")
	buildLog := filepath.Join(t.TempDir(), "builds.log")
	lock, err := st.LockKey(context.Background(), key, LockOptions{Purpose: "test"})
	if err != nil {
		t.Fatal(err)
	}
	h1 := startHelper(t, "build", st.Dir(), key, envLog+"="+buildLog)
	h2 := startHelper(t, "build", st.Dir(), key, envLog+"="+buildLog)
	h1.expect(t, "waiting")
	h2.expect(t, "waiting")
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
	d1 := h1.expect(t, "done")
	d2 := h2.expect(t, "done")
	h1.finish(t)
	h2.finish(t)

	sha := func(line string) string { return line[strings.Index(line, "sha=")+4:] }
	if sha(d1) != sha(d2) {
		t.Errorf("helpers got different objects: %q, %q", d1, d2)
	}
	if n := strings.Count(d1+d2, "built=true"); n != 1 {
		t.Errorf("%d helpers built the object, want 1: %q, %q", n, d1, d2)
	}
	b, err := os.ReadFile(buildLog)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 1 {
		t.Errorf("build ran %d times, want once:\n%s", n, b)
	}
	obj := mustLookup(t, st, key)
	if obj.SHA256 != sha(d1) {
		t.Errorf("stored %s, helpers said %s", obj.SHA256, sha(d1))
	}
	if err := st.Verify(context.Background(), obj); err != nil {
		t.Error(err)
	}
}

func TestGetOrBuildError(t *testing.T) {
	st, _ := openStore(t)
	key := testKey("fails")
	boom := errors.New("qemu exited")
	_, built, err := st.GetOrBuild(context.Background(), key, Info{Kind: "disk"}, LockOptions{},
		func(_ context.Context, w *Writer) error {
			if err := w.WriteFile("disk.qcow2", []byte("partial"), 0o644); err != nil {
				return err
			}
			return boom
		})
	if !errors.Is(err, boom) || built {
		t.Fatalf("GetOrBuild = %v, %v; want the build error", built, err)
	}
	mustMiss(t, st, key)
	sc, err := st.scanObjects()
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.temps) != 0 {
		t.Errorf("failed build left %v", sc.temps)
	}
}

func TestOpenRefusesUnknownLayout(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte("imgform-store 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrStoreLayout) {
		t.Fatalf("Open = %v, want ErrStoreLayout", err)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv(EnvCacheDir, "/somewhere/cache")
	if dir, err := DefaultDir(); err != nil || dir != "/somewhere/cache" {
		t.Errorf("DefaultDir with %s = %q, %v", EnvCacheDir, dir, err)
	}
	t.Setenv(EnvCacheDir, "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if dir, err := DefaultDir(); err != nil || dir != "/xdg/imgform" {
		t.Errorf("DefaultDir = %q, %v; want /xdg/imgform", dir, err)
	}
}

// TestRebuiltParent: a layer is only valid over the bytes it was built on. When its parent is damaged and
// rebuilt under the same key with other bytes (builds are not reproducible), the layer must miss and be
// replaced when rebuilt.
func TestRebuiltParent(t *testing.T) {
	st, _ := openStore(t)
	pk, ck := testKey("parent"), testKey("child")
	parent := commit(t, st, pk, Info{Kind: "disk"}, map[string]string{"disk.qcow2": "base, first build"})
	commit(t, st, ck, Info{Kind: "disk", Parent: pk}, map[string]string{"disk.qcow2": "overlay on the first build"})

	if err := os.Remove(parent.Path("disk.qcow2")); err != nil {
		t.Fatal(err)
	}
	mustMiss(t, st, pk)
	commit(t, st, pk, Info{Kind: "disk"}, map[string]string{"disk.qcow2": "base, second build"})
	mustLookup(t, st, pk)
	mustMiss(t, st, ck)
	list, err := st.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range list {
		if info.Key == ck && !strings.Contains(info.Problem, "rebuilt") {
			t.Errorf("List: child problem = %q, want a rebuilt parent", info.Problem)
		}
	}

	child := commit(t, st, ck, Info{Kind: "disk", Parent: pk}, map[string]string{"disk.qcow2": "overlay on the second build"})
	if got := mustLookup(t, st, ck); got.SHA256 != child.SHA256 {
		t.Errorf("the stale child was not replaced")
	}
}

func TestBeginNeedsParent(t *testing.T) {
	st, _ := openStore(t)
	if _, err := st.Begin(testKey("child"), Info{Kind: "disk", Parent: testKey("nowhere")}); err == nil {
		t.Fatal("Begin on a missing parent succeeded")
	}
}

// A new cache is private to its user (the layers hold what the builds wrote into their guests); one that
// exists keeps the mode its owner gave it.
func TestOpenMakesANewCachePrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "cache")
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"", "objects", "locks", "records"} {
		st, err := os.Stat(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s/%s has mode %v: other users can read the cache", dir, sub, st.Mode().Perm())
		}
	}
	shared := t.TempDir()
	if err := os.Chmod(shared, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(shared); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(shared); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("an existing cache folder's mode changed: %v, %v", st.Mode().Perm(), err)
	}
}

package remote

import (
	"context"
	"errors"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"gitlab.com/imgform/imgform/internal/state"
)

// TestPushPull plays two machines with two stores sharing a plain-HTTP registry on loopback: A pushes a
// layer (and with it its base), B looks them up and pulls them, and B's overlay still finds its base.
func TestPushPull(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.Options{})
	a, b := openStore(t), openStore(t)
	base, layer := qcow2Chain(t, a, "deb")

	ca := openCache(t, reg, env{}, nil)
	if ca.repo.PlainHTTP != true {
		t.Error("a loopback registry without TLS is not reached over plain HTTP")
	}
	rep, err := ca.Push(ctx, a, layer, map[string]string{"com.example.pipeline": "42"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []state.Key{base.Key, layer.Key}; !slices.Equal(rep.Pushed, want) {
		t.Errorf("Pushed = %v, want the base then the layer", rep.Pushed)
	}
	pushed := ca.Counters()
	if pushed.BytesPushed == 0 || pushed.BlobsPushed == 0 {
		t.Errorf("counters after a push: %+v", pushed)
	}
	// A second push of the same object is a no-op.
	if rep, err := ca.Push(ctx, a, layer, nil); err != nil || len(rep.Pushed) != 0 {
		t.Errorf("second Push = %+v, %v; want nothing pushed", rep, err)
	}
	if got := ca.Counters(); got.BytesPushed != pushed.BytesPushed {
		t.Errorf("second push sent %d bytes", got.BytesPushed-pushed.BytesPushed)
	}

	cb := openCache(t, reg, env{}, func(o *Options) { o.Mode = ReadOnly })
	e, ok, err := cb.Stat(ctx, layer.Key)
	if err != nil || !ok {
		t.Fatalf("Stat = %v, %v; want a hit", ok, err)
	}
	if e.Meta.SHA256 != layer.SHA256 || e.Meta.Parent != base.Key || !e.Meta.Created.Equal(layer.Created) {
		t.Errorf("Stat meta = %+v, want %+v", e.Meta, layer.Meta)
	}
	if e.Size <= 0 || e.Annotations[AnnotationKind] != "provision" || e.Annotations["com.example.pipeline"] != "42" ||
		e.Annotations[ocispec.AnnotationCreated] == "" || e.Annotations[AnnotationVersion] != "test" {
		t.Errorf("Stat entry: size %d, annotations %v", e.Size, e.Annotations)
	}
	for _, l := range e.manifest.Layers {
		if l.MediaType != MediaTypeFile || l.Annotations[ocispec.AnnotationTitle] == "" {
			t.Errorf("layer %+v", l)
		}
	}

	got, err := cb.Pull(ctx, b, layer.Key)
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, got, layer)
	gotBase, ok, err := b.Lookup(base.Key)
	if err != nil || !ok {
		t.Fatalf("the base was not pulled with the layer: %v, %v", ok, err)
	}
	sameFiles(t, gotBase, base)
	if err := b.Verify(ctx, got); err != nil {
		t.Error(err)
	}
	backing, chain := backingChain(t, got.Path("disk.qcow2"))
	if !strings.HasPrefix(backing, "../") || len(chain) != 2 {
		t.Errorf("pulled layer: backing file %q, chain %v; want a relative path that resolves to the base", backing, chain)
	} else if fi, err := os.Stat(chain[1]); err != nil || !os.SameFile(fi, mustStat(t, gotBase.Path("disk.qcow2"))) {
		t.Errorf("the pulled layer's backing file %s is not the pulled base: %v", chain[1], err)
	}
	if fi, err := os.Stat(got.Path("id_ed25519")); err != nil || fi.Mode().Perm() != 0o400 {
		t.Errorf("pulled private key mode = %v, %v; want 0400 (0600 read-only, as it was)", fi.Mode(), err)
	}
	pulled := cb.Counters().BytesPulled
	if pulled == 0 {
		t.Error("no bytes counted as pulled")
	}
	// B holds it now: a pull downloads nothing.
	if _, err := cb.Pull(ctx, b, layer.Key); err != nil || cb.Counters().BytesPulled != pulled {
		t.Errorf("second Pull: %v, %d more bytes", err, cb.Counters().BytesPulled-pulled)
	}

	entries, err := cb.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("List returned %d entries, want 2", len(entries))
	}
}

func TestStatMany(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.Options{})
	st := openStore(t)
	c := openCache(t, reg, env{}, func(o *Options) { o.Parallel = 3 })

	var hits, all []state.Key
	for i := range 5 {
		obj := commitFiles(t, st, testKey("obj"+string(rune('a'+i))), state.Info{Kind: "seed"},
			map[string][]byte{"seed.iso": []byte(strings.Repeat("x", i+1))})
		if _, err := c.Push(ctx, st, obj, nil); err != nil {
			t.Fatal(err)
		}
		hits = append(hits, obj.Key)
	}
	all = append(all, hits...)
	for i := range 7 {
		all = append(all, testKey("missing"+string(rune('a'+i))))
	}
	found, err := c.StatMany(ctx, append(all, hits[0])) // a duplicate is looked up once
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != len(hits) {
		t.Errorf("StatMany found %d keys, want %d", len(found), len(hits))
	}
	for _, k := range hits {
		if e, ok := found[k]; !ok || e.Key != k || e.Meta.Key != k {
			t.Errorf("StatMany misses %s", k.Short())
		}
	}
	if _, ok, err := c.Stat(ctx, testKey("missing")); ok || err != nil {
		t.Errorf("Stat of a missing key = %v, %v; want a miss", ok, err)
	}
	if _, err := c.Pull(ctx, openStore(t), testKey("missing")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Pull of a missing key: %v, want ErrNotFound", err)
	}
}

func TestReadOnlyRefusesPush(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	st := openStore(t)
	obj := commitFiles(t, st, testKey("seed"), state.Info{Kind: "seed"}, map[string][]byte{"seed.iso": []byte("cidata")})
	c := openCache(t, reg, env{}, func(o *Options) { o.Mode = ReadOnly })
	_, err := c.Push(context.Background(), st, obj, nil)
	if !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Push in read mode: %v, want ErrReadOnly", err)
	}
	t.Log(err)
	if got := c.Counters(); got != (Counters{}) {
		t.Errorf("a refused push transferred %+v", got)
	}
	if _, ok, err := c.Stat(context.Background(), obj.Key); ok || err != nil {
		t.Errorf("after a refused push Stat = %v, %v", ok, err)
	}
}

// TestCorruptedBlob damages a blob on the registry's disk: the pull detects it by digest, and B's store
// is left without the object and without temp folders.
func TestCorruptedBlob(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.Options{})
	a, b := openStore(t), openStore(t)
	obj := commitFiles(t, a, testKey("fetch"), state.Info{Kind: "fetch"}, map[string][]byte{
		"disk.raw":   noise(200 << 10),
		"SHA256SUMS": []byte("abc  disk.raw\n"),
	})
	c := openCache(t, reg, env{}, nil)
	if _, err := c.Push(ctx, a, obj, nil); err != nil {
		t.Fatal(err)
	}
	e, _, err := c.Stat(ctx, obj.Key)
	if err != nil {
		t.Fatal(err)
	}
	var biggest ocispec.Descriptor
	for _, l := range e.manifest.Layers {
		if l.Size > biggest.Size {
			biggest = l
		}
	}
	f, err := os.OpenFile(reg.BlobPath(biggest.Digest.String()), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage!"), biggest.Size/2); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = c.Pull(ctx, b, obj.Key)
	t.Log(err)
	if !errors.Is(err, state.ErrCorrupt) {
		t.Fatalf("Pull of a corrupted blob: %v, want an error wrapping state.ErrCorrupt", err)
	}
	if _, ok, _ := b.Lookup(obj.Key); ok {
		t.Error("the corrupted object was imported")
	}
	objects := filepath.Join(b.Dir(), "objects")
	if err := filepath.WalkDir(objects, func(path string, d os.DirEntry, err error) error {
		if err == nil && path != objects && d.IsDir() && len(d.Name()) > 2 {
			t.Errorf("left in the store: %s", path)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentPushes has two machines push the same key at once, several times each: every push
// succeeds and the remote ends with one complete entry a third machine can pull.
func TestConcurrentPushes(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.Options{})
	a, b := openStore(t), openStore(t)
	files := map[string][]byte{"disk.raw": noise(100 << 10), "meta.txt": []byte("same step")}
	objA := commitFiles(t, a, testKey("step"), state.Info{Kind: "disk"}, files)
	objB := commitFiles(t, b, testKey("step"), state.Info{Kind: "disk"}, files)

	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for i := range 6 {
		st, obj := a, objA
		if i%2 == 1 {
			st, obj = b, objB
		}
		c := openCache(t, reg, env{}, nil)
		wg.Go(func() {
			_, err := c.Push(ctx, st, obj, nil)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	third := openStore(t)
	got, err := openCache(t, reg, env{}, nil).Pull(ctx, third, objA.Key)
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, got, objA)
}

func mustStat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// TestParentBuiltTwice has two machines build the same base key with other bytes (builds are not
// reproducible). B's layer is useless over A's base: B does not push it, and B cannot pull A's layer over
// its own base.
func TestParentBuiltTwice(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.Options{})
	a, b := openStore(t), openStore(t)
	baseInfo := state.Info{Kind: "fetch"}
	baseA := commitFiles(t, a, testKey("base"), baseInfo, map[string][]byte{"disk": []byte("built on A")})
	baseB := commitFiles(t, b, testKey("base"), baseInfo, map[string][]byte{"disk": []byte("built on B")})
	layerInfo := func(base *state.Object) state.Info { return state.Info{Kind: "disk", Parent: base.Key} }
	layerA := commitFiles(t, a, testKey("layer"), layerInfo(baseA), map[string][]byte{"disk": []byte("A's overlay")})
	layerB := commitFiles(t, b, testKey("layer2"), layerInfo(baseB), map[string][]byte{"disk": []byte("B's overlay")})

	c := openCache(t, reg, env{}, nil)
	if _, err := c.Push(ctx, a, layerA, nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.Push(ctx, b, layerB, nil)
	if !errors.Is(err, ErrParentConflict) {
		t.Fatalf("Push over another build of the parent: %v, want ErrParentConflict", err)
	}
	t.Log(err)
	if _, ok, err := c.Stat(ctx, layerB.Key); ok || err != nil {
		t.Errorf("B's layer was pushed: %v, %v", ok, err)
	}
	_, err = c.Pull(ctx, b, layerA.Key)
	if !errors.Is(err, state.ErrParentMismatch) {
		t.Fatalf("Pull over another build of the parent: %v, want state.ErrParentMismatch", err)
	}
	t.Log(err)
}

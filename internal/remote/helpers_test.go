package remote

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gitlab.com/imgform/imgform/internal/state"
)

// testKey derives a key from a name, as the engine derives keys from inputs.
func testKey(name string) state.Key { return state.Key(sha256.Sum256([]byte(name))) }

// openStore opens an empty store: one machine's cache.
func openStore(t *testing.T) *state.Store {
	t.Helper()
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st.Logf = t.Logf
	return st
}

// env is a fake environment for Options.Getenv.
type env map[string]string

func (e env) get(name string) string { return e[name] }

// openCache opens the registry's repository "imgform/cache" with credentials from e only: Docker's
// config.json of the machine running the tests must not leak in.
func openCache(t *testing.T, reg *registrytest.Registry, e env, edit func(*Options)) *Cache {
	t.Helper()
	c, err := tryOpen(t, reg, e, edit)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func tryOpen(t *testing.T, reg *registrytest.Registry, e env, edit func(*Options)) (*Cache, error) {
	t.Helper()
	opts := Options{
		CAFile:       reg.CAFile,
		DockerConfig: filepath.Join(t.TempDir(), "config.json"),
		Version:      "test",
		Logf:         t.Logf,
		Getenv:       e.get,
	}
	if edit != nil {
		edit(&opts)
	}
	return Open(context.Background(), Ref{Host: reg.Host, Repository: "imgform/cache"}, opts)
}

// commitFiles stores an object made of files under key.
func commitFiles(t *testing.T, st *state.Store, key state.Key, info state.Info, files map[string][]byte) *state.Object {
	t.Helper()
	w, err := st.Begin(key, info)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for name, content := range files {
		if err := w.WriteFile(name, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	obj, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// qcow2Chain stores a base disk and an overlay on it whose backing file is the relative path from the
// overlay's folder to the base, as imgform's layers are. The base holds some bytes that do not compress to
// nothing, so that blobs have a size worth corrupting.
func qcow2Chain(t *testing.T, st *state.Store, name string) (base, layer *state.Object) {
	t.Helper()
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatalf("qemu-img is needed (Debian package qemu-utils): run scripts/install-deps.sh: %v", err)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(qemuImg, args...).CombinedOutput(); err != nil {
			t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
		}
	}
	bw, err := st.Begin(testKey(name+"/base"), state.Info{Kind: "fetch", Image: name, Step: "fetch"})
	if err != nil {
		t.Fatal(err)
	}
	defer bw.Abort()
	run("create", "-q", "-f", "qcow2", filepath.Join(bw.Dir(), "disk.qcow2"), "64M")
	if err := bw.WriteFile("noise", noise(300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if base, err = bw.Commit(); err != nil {
		t.Fatal(err)
	}

	lw, err := st.Begin(testKey(name+"/layer"), state.Info{Kind: "provision", Image: name, Step: "provision", Parent: base.Key})
	if err != nil {
		t.Fatal(err)
	}
	defer lw.Abort()
	rel, err := filepath.Rel(lw.Dir(), base.Path("disk.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	run("create", "-q", "-f", "qcow2", "-b", rel, "-F", "qcow2", filepath.Join(lw.Dir(), "disk.qcow2"))
	if err := lw.WriteFile("id_ed25519", []byte("not a real key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if layer, err = lw.Commit(); err != nil {
		t.Fatal(err)
	}
	return base, layer
}

// noise returns n bytes that compress somewhat, like a disk image.
func noise(n int) []byte {
	b := make([]byte, n)
	var state uint32 = 1
	for i := range b {
		state = state*1664525 + 1013904223
		b[i] = byte(state>>24) & 0x0f
	}
	return b
}

// backingChain returns what a qcow2 image's header names as its backing file, and the files of its backing
// chain as qemu-img resolves them (it fails when one cannot be opened).
func backingChain(t *testing.T, path string) (backing string, chain []string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "-U", "--backing-chain", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var images []struct {
		Filename        string `json:"filename"`
		BackingFilename string `json:"backing-filename"`
	}
	if err := json.Unmarshal(out, &images); err != nil {
		t.Fatal(err)
	}
	for _, img := range images {
		chain = append(chain, img.Filename)
	}
	if len(images) > 0 {
		backing = images[0].BackingFilename
	}
	return backing, chain
}

// sameFiles fails the test unless the two objects hold byte-identical files.
func sameFiles(t *testing.T, got, want *state.Object) {
	t.Helper()
	if len(got.Files) != len(want.Files) {
		t.Fatalf("%s has files %v, want %v", got.Key.Short(), got.Files, want.Files)
	}
	for _, f := range want.Files {
		a, err := os.ReadFile(got.Path(f.Name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(want.Path(f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: file %q differs from the original", got.Key.Short(), f.Name)
		}
	}
}

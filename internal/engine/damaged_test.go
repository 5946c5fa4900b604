package engine

import (
	"gitlab.com/imgform/imgform/internal/step"

	"os"
	"strings"
	"testing"
)

// A flipped byte in a cached layer is found before a session builds on it, and never reaches an output.
func TestDamagedLayerIsNotUsed(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	mustApply(t, te, te.load())
	p := te.plan(te.load())
	obj, ok, err := te.store.Lookup(mustKey(t, p.Step("base/provision/two").Key))
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	flipByte(t, obj.Path(step.LayerFile))
	te.write("files/motd", "changed\n") // provision "three" now builds on the damaged layer
	_, _, err = te.apply(te.load())
	if err == nil || !strings.Contains(err.Error(), "is damaged") || !strings.Contains(err.Error(), "cache verify -remove") {
		t.Fatalf("apply error %v", err)
	}
}

// A flipped byte deeper in the chain (a layer below the one a step starts from) is found too: the session
// and the export read through the whole chain.
func TestDamagedDeepLayerIsNotUsed(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	mustApply(t, te, te.load())
	p := te.plan(te.load())
	obj, ok, err := te.store.Lookup(mustKey(t, p.Step("base/provision/one").Key))
	if err != nil || !ok {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	flipByte(t, obj.Path(step.LayerFile))
	te.write("files/motd", "changed\n") // provision "three" builds on "two", which is built on "one"
	_, rec, err := te.apply(te.load())
	if err == nil || !strings.Contains(err.Error(), "is damaged") || !strings.Contains(err.Error(), obj.Key.Short()) {
		t.Fatalf("apply error %v", err)
	}
	if rec.finished["base/export/raw"] == StatusDone {
		t.Error("an output was written from a damaged chain")
	}
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

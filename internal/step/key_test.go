package step

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
)

type fakeKind struct{ version int }

func (fakeKind) Name() string                                               { return "fake" }
func (k fakeKind) Version() int                                             { return k.version }
func (fakeKind) Class() Class                                               { return Guest }
func (fakeKind) Instances(*config.Image) []Instance                         { return nil }
func (fakeKind) Key(context.Context, *KeyContext, *Step, *KeyBuilder) error { return nil }

func keyOf(t *testing.T, kc *KeyContext, k Kind, add func(b *KeyBuilder)) (state.Key, []Input) {
	t.Helper()
	b := NewKeyBuilder(kc, &Step{Addr: Address{Image: "img", Kind: k.Name()}, Kind: k})
	add(b)
	key, in, err := b.Sum()
	if err != nil {
		t.Fatal(err)
	}
	return key, in
}

func testContext(salt string) *KeyContext {
	return &KeyContext{Salt: []byte(salt), Config: &config.Config{Variables: map[string]*config.Variable{
		"password": {Name: "password", Sensitive: true, Type: cty.String, Value: cty.StringVal("hunter2")},
		"packages": {Name: "packages", Type: cty.String, Value: cty.StringVal("curl")},
	}}}
}

// Parts are length-prefixed: moving bytes from one part's name or data to the next gives another key. The
// kind's version is in every key; explanation-only inputs are not.
func TestKeyParts(t *testing.T) {
	kc := testContext("salt")
	base, _ := keyOf(t, kc, fakeKind{1}, func(b *KeyBuilder) { b.Add(InputConfig, "ab", []byte("c")) })
	for name, tc := range map[string]struct {
		kind Kind
		add  func(b *KeyBuilder)
		same bool
	}{
		"shifted byte":    {fakeKind{1}, func(b *KeyBuilder) { b.Add(InputConfig, "a", []byte("bc")) }, false},
		"other version":   {fakeKind{2}, func(b *KeyBuilder) { b.Add(InputConfig, "ab", []byte("c")) }, false},
		"other type only": {fakeKind{1}, func(b *KeyBuilder) { b.Add(InputScript, "ab", []byte("c")) }, true},
		"with variables":  {fakeKind{1}, func(b *KeyBuilder) { b.Add(InputConfig, "ab", []byte("c")); b.Variables([]string{"packages"}) }, true},
	} {
		k, _ := keyOf(t, kc, tc.kind, tc.add)
		if (k == base) != tc.same {
			t.Errorf("%s: same key %t, want %t", name, k == base, tc.same)
		}
	}
}

// Inputs are typed and sorted; a step input carries its address; a sensitive variable's digest is keyed by
// the store's salt, a plain one is not.
func TestKeyInputs(t *testing.T) {
	dep := &Step{Addr: Address{Image: "img", Kind: "boot"}, Key: state.Key{7}}
	add := func(b *KeyBuilder) {
		b.Step(dep)
		b.Script("cleanup script", "rm -rf /x")
		b.Variables([]string{"password", "packages", "password", "unknown"})
	}
	_, in1 := keyOf(t, testContext("one"), fakeKind{1}, add)
	_, in2 := keyOf(t, testContext("two"), fakeKind{1}, add)
	var names []string
	for _, in := range in1 {
		names = append(names, string(in.Type)+":"+in.Name)
	}
	if got := strings.Join(names, " "); got != "script:cleanup script kind:kind step:step img/boot variable:variable packages variable:variable password" {
		t.Errorf("inputs %s", got)
	}
	if in1[2].Step == nil || *in1[2].Step != dep.Addr || in1[2].Digest != Digest([]byte(dep.Key.String())) {
		t.Errorf("step input %+v", in1[2])
	}
	if in1[3].Digest != in2[3].Digest || !in1[3].Explain {
		t.Errorf("plain variable: %s and %s with other salts, explain %t", in1[3].Digest, in2[3].Digest, in1[3].Explain)
	}
	if in1[4].Digest == in2[4].Digest || in1[4].Digest == Digest([]byte(`"hunter2"`)) {
		t.Errorf("sensitive variable digest %s is not keyed by the salt", in1[4].Digest)
	}
}

// The digest a plan keyed a file with is found again by the run when the configuration folder is relative
// (imgform apply with no folder is "."): an edit between plan and run is caught, and a file the plan never
// hashed is refused rather than passed unchecked.
func TestCheckFileWithRelativeConfigFolder(t *testing.T) {
	work := t.TempDir()
	t.Chdir(work)
	if err := os.MkdirAll("cfg/scripts", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("cfg/scripts/a.sh", []byte("echo a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kc := &KeyContext{Config: &config.Config{Dir: "cfg"}, Files: OpenFileHasher(t.TempDir()), Shared: &Shared{}}
	planned, err := kc.HashFile(context.Background(), "scripts/a.sh")
	if err != nil {
		t.Fatal(err)
	}
	// The run reads the file by its path under the configuration folder, relative or absolute.
	for _, p := range []string{filepath.Join("cfg", "scripts", "a.sh"), filepath.Join(work, "cfg", "scripts", "a.sh")} {
		if err := kc.Shared.CheckFile(p, planned); err != nil {
			t.Errorf("unchanged %s: %v", p, err)
		}
		if err := kc.Shared.CheckFile(p, strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "changed while imgform ran") {
			t.Errorf("edited %s: %v", p, err)
		}
	}
	if err := kc.Shared.CheckFile("cfg/scripts/other.sh", planned); err == nil || !strings.Contains(err.Error(), "not hashed into its key") {
		t.Errorf("a file the plan did not hash: %v", err)
	}
	var none *Shared
	if err := none.CheckFile("cfg/scripts/other.sh", planned); err != nil {
		t.Errorf("no shared values (nothing to check against): %v", err)
	}
}

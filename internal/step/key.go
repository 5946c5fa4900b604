package step

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"sync"

	ctyjson "github.com/zclconf/go-cty/cty/json"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/state"
)

// What goes into a step's key, and what must stay out.
//
// In: the step kind and its version; the step's resolved configuration in a canonical JSON encoding
// (struct fields in a fixed order, map keys sorted); the content of every file the step reads (scripts,
// uploaded files; userdata files are already content in the configuration); the text of every script
// imgform itself runs in the guest for the step (cleanup, the built-in checks), so that a change of
// imgform's behaviour never reuses old results; the keys of the steps it builds on. For a source: its
// checksum, never its URL, so that a mirror or a local copy of the same image hits the same cache entry (the
// URL only counts when no checksum is declared).
//
// Out: absolute paths and the configuration folder (the same configuration elsewhere gives the same keys),
// timestamps, display names (image names, step labels), output paths, progress and log settings,
// parallelism, timeouts, memory, CPU count and accelerator (they change how fast a step runs, not what it
// makes), and the ephemeral build key (a new key must not invalidate layers; it travels with them).
//
// Variables a step reads are recorded next to the key as explanations (so plan can say "variable packages
// changed") but are not hashed themselves: their effect is already in the resolved configuration, and
// hashing them too would re-run an export when only the output path's version variable changed.

// InputType says what an input of a key is, so that a plan can explain a change without parsing its name.
type InputType string

const (
	InputKind     InputType = "kind"     // the kind and its version
	InputStep     InputType = "step"     // the key of a step this one builds on (Input.Step)
	InputConfig   InputType = "config"   // a block of the configuration, as canonical JSON
	InputFile     InputType = "file"     // the content of a local file the step reads (script, upload)
	InputScript   InputType = "script"   // the text of a script imgform runs in the guest
	InputSource   InputType = "source"   // what identifies a source image (checksum, file, URL)
	InputVariable InputType = "variable" // a variable the step reads: explanation only, not in the key
)

// Input is one named part of a key. Digest is "sha256:<hex>" of the part (a keyed digest for sensitive
// values), never the value itself, so inputs can be stored in the record and printed in plans.
type Input struct {
	Type InputType `json:"type"`
	// Name is unique among the step's inputs and stable across releases: the record maps it to the digest.
	Name   string `json:"name"`
	Digest string `json:"digest"`
	// Explain marks inputs kept only to explain changes; they are not part of the key.
	Explain bool `json:"explain,omitempty"`
	// Step is the address of the step whose key this is, for InputStep.
	Step *Address `json:"step,omitempty"`
}

// KeyContext is what computing keys needs besides the steps themselves. One is made per plan.
type KeyContext struct {
	Config *config.Config
	// Files hashes local files, remembering the digests across runs.
	Files *FileHasher
	// Salt is the store's secret for keyed digests of sensitive values.
	Salt []byte
	// Debug, when set, is told every part hashed into a key (IMGFORM_DEBUG_KEYS).
	Debug func(s *Step, name string, data []byte)
	// Shared carries values a kind works out while keying and needs again when it runs (a resolved source
	// checksum): Env.Shared is the same.
	Shared *Shared
}

// Path resolves a path of the configuration against its folder.
func (kc *KeyContext) Path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(kc.Config.Dir, p)
}

// Shared is a concurrency-safe map of values for one plan and its apply.
type Shared struct {
	mu sync.Mutex
	m  map[string]any
}

// Get returns the value stored under name, if any.
func (sh *Shared) Get(name string) (any, bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	v, ok := sh.m[name]
	return v, ok
}

// Set stores a value under name.
func (sh *Shared) Set(name string, v any) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = map[string]any{}
	}
	sh.m[name] = v
}

// KeyBuilder hashes named parts with length prefixes so that no two different lists of parts give the same
// byte stream.
type KeyBuilder struct {
	kc     *KeyContext
	step   *Step
	parts  []keyPart
	inputs []Input
}

type keyPart struct {
	name string
	data []byte
}

// NewKeyBuilder starts the key of s with its kind and version.
func NewKeyBuilder(kc *KeyContext, s *Step) *KeyBuilder {
	b := &KeyBuilder{kc: kc, step: s}
	b.Add(InputKind, "kind", []byte(fmt.Sprintf("%s/v%d", s.Kind.Name(), s.Kind.Version())))
	return b
}

// Add hashes a part into the key and records its digest.
func (b *KeyBuilder) Add(typ InputType, name string, data []byte) {
	b.add(Input{Type: typ, Name: name, Digest: Digest(data)}, data)
}

func (b *KeyBuilder) add(in Input, data []byte) {
	b.parts = append(b.parts, keyPart{in.Name, data})
	b.inputs = append(b.inputs, in)
	if b.kc != nil && b.kc.Debug != nil {
		b.kc.Debug(b.step, in.Name, data)
	}
}

// Config hashes the canonical JSON encoding of a configuration block.
func (b *KeyBuilder) Config(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s of %s: %w", name, b.step.Addr.ID(), err)
	}
	b.Add(InputConfig, name, data)
	return nil
}

// Step hashes the key of a step this one builds on.
func (b *KeyBuilder) Step(dep *Step) {
	data := []byte(dep.Key.String())
	addr := dep.Addr
	b.add(Input{Type: InputStep, Name: "step " + addr.ID(), Digest: Digest(data), Step: &addr}, data)
}

// Script hashes the text of a script imgform runs in the guest for the step.
func (b *KeyBuilder) Script(name, text string) { b.Add(InputScript, name, []byte(text)) }

// File hashes the content of a local file the step reads as "<role> <path>" (nothing when path is empty):
// a script or an uploaded file.
func (b *KeyBuilder) File(ctx context.Context, role, path string) error {
	if path == "" {
		return nil
	}
	h, err := b.kc.Files.Hash(ctx, b.kc.Path(path))
	if err != nil {
		return fmt.Errorf("%s %s: %w", role, path, err)
	}
	b.Add(InputFile, role+" "+path, []byte("sha256:"+h))
	return nil
}

// Variables records the digests of the variables the step reads (keyed for sensitive ones), to explain
// changes; they are not part of the key.
func (b *KeyBuilder) Variables(names ...[]string) {
	var all []string
	for _, n := range names {
		all = append(all, n...)
	}
	sort.Strings(all)
	seen := map[string]bool{}
	for _, n := range all {
		v := b.kc.Config.Variables[n]
		if v == nil || seen[n] {
			continue
		}
		seen[n] = true
		data, err := ctyjson.Marshal(v.Value, v.Type) // with its type, so 1 and "1" differ
		if err != nil {
			continue
		}
		dig := Digest(data)
		if v.Sensitive {
			dig = keyedDigest(b.kc.Salt, data)
		}
		b.inputs = append(b.inputs, Input{Type: InputVariable, Name: "variable " + n, Digest: dig, Explain: true})
	}
}

// Sum returns the key and the inputs sorted by name.
func (b *KeyBuilder) Sum() (state.Key, []Input) {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range b.parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p.name)))])
		h.Write([]byte(p.name))
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p.data)))])
		h.Write(p.data)
	}
	var k state.Key
	copy(k[:], h.Sum(nil))
	sort.SliceStable(b.inputs, func(i, j int) bool { return b.inputs[i].Name < b.inputs[j].Name })
	return k, b.inputs
}

// Digest is "sha256:<hex>" of data.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// keyedDigest is a digest that cannot be brute-forced from the record without the store's salt, for values
// of sensitive variables.
func keyedDigest(salt, data []byte) string {
	m := hmac.New(sha256.New, salt)
	m.Write(data)
	return "sha256:" + hex.EncodeToString(m.Sum(nil))
}

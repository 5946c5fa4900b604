package step

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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
//
// Secrets: a key is printed by plan, stored as a folder name and published in the manifest, and the
// configuration that made it is often in git, so a plain hash of a part that holds a sensitive value lets
// anyone guess the value offline. Such a part (one of a step that reads a sensitive variable, or whose bytes
// hold a sensitive value in any of the usual encodings) enters the key, the record and the debug output
// only as an HMAC under the key secret (KeyContext.Salt): the store's own secret, or a secret shared by the
// machines of one team (IMGFORM_KEY_SECRET), so that they still hit each other's keys.

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
	InputRebuild  InputType = "rebuild"  // the token of a build forced by -replace or refresh_every
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
	// Salt is the key secret for keyed digests of sensitive values (see above).
	Salt []byte
	// Debug, when set, is told every part hashed into a key (IMGFORM_DEBUG_KEYS); data is nil for a
	// sensitive part, whose digest is keyed.
	Debug func(s *Step, name string, data []byte, digest string)
	// Shared carries values a kind works out while keying and needs again when it runs (a resolved source
	// checksum): Env.Shared is the same.
	Shared *Shared
	// Warn tells the user about something worth knowing in the configuration (a weak checksum); it may be
	// nil.
	Warn func(text string)
}

// Warnf calls Warn, if set, with a formatted text.
func (kc *KeyContext) Warnf(format string, args ...any) {
	if kc.Warn != nil {
		kc.Warn(fmt.Sprintf(format, args...))
	}
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
	// tainted is set when the step reads a sensitive variable: every part of its own then counts as
	// sensitive, whatever encoding its bytes use. sensitive is set by Sum when any part was.
	tainted   bool
	sensitive bool
	err       error
}

type keyPart struct {
	name string
	data []byte
	// public parts (a kind and version, the key of another step) never hold a secret.
	public bool
	input  int // the part's entry in inputs
}

// NewKeyBuilder starts the key of s with its kind and version.
func NewKeyBuilder(kc *KeyContext, s *Step) *KeyBuilder {
	b := &KeyBuilder{kc: kc, step: s}
	b.Add(InputKind, "kind", []byte(fmt.Sprintf("%s/v%d", s.Kind.Name(), s.Kind.Version())))
	return b
}

// Add hashes a part into the key and records its digest.
func (b *KeyBuilder) Add(typ InputType, name string, data []byte) {
	b.add(Input{Type: typ, Name: name}, data, typ == InputKind)
}

func (b *KeyBuilder) add(in Input, data []byte, public bool) {
	b.parts = append(b.parts, keyPart{in.Name, data, public, len(b.inputs)})
	b.inputs = append(b.inputs, in)
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
	addr := dep.Addr
	b.add(Input{Type: InputStep, Name: "step " + addr.ID(), Step: &addr}, []byte(dep.Key.String()), true)
}

// Script hashes the text of a script imgform runs in the guest for the step.
func (b *KeyBuilder) Script(name, text string) { b.Add(InputScript, name, []byte(text)) }

// File hashes the content of a local file the step reads as "<role> <path>" (nothing when path is empty):
// a script or an uploaded file.
func (b *KeyBuilder) File(ctx context.Context, role, path string) error {
	if path == "" {
		return nil
	}
	h, err := b.kc.HashFile(ctx, path)
	if err != nil {
		return fmt.Errorf("%s %s: %w", role, path, err)
	}
	b.Add(InputFile, role+" "+path, []byte("sha256:"+h))
	return nil
}

// HashFile returns the hex sha256 of a local file of the configuration and remembers it for the step's
// run, which checks that what it copies or uploads is what the key was made from (Shared.CheckFile).
func (kc *KeyContext) HashFile(ctx context.Context, path string) (string, error) {
	p := kc.Path(path)
	h, err := kc.Files.Hash(ctx, p)
	if err == nil && kc.Shared != nil {
		// The configuration folder is often relative ("." by default): remember the digest under the
		// absolute path, which is how the run looks it up, wherever its path comes from.
		abs, aerr := filepath.Abs(p)
		if aerr != nil {
			return "", aerr
		}
		kc.Shared.Set(fileDigestName(abs), h)
	}
	return h, err
}

func fileDigestName(abs string) string { return "file sha256/" + abs }

// FileDigest returns the hex sha256 a local file had when the plan keyed it.
func (sh *Shared) FileDigest(path string) (string, bool) {
	if sh == nil {
		return "", false
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	v, ok := sh.Get(fileDigestName(abs))
	h, _ := v.(string)
	return h, ok
}

// CheckFile fails when the file at path, whose content a step has just read (hex sha256 got), is not the
// content its key was made from: a file edited during an apply must not be stored under the old key.
//
// A file the plan did not hash is refused too: every file a step reads enters its key, so a missing digest
// means that the run reads another path than the plan hashed, and nothing would be checked.
func (sh *Shared) CheckFile(path, got string) error {
	if sh == nil {
		return nil
	}
	want, ok := sh.FileDigest(path)
	if !ok {
		return fmt.Errorf("%s was read by the step but not hashed into its key (a bug in imgform): refusing to store a result that could be keyed by other content", path)
	}
	if want == got {
		return nil
	}
	return fmt.Errorf("%s changed while imgform ran (sha256 %s when planned, %s when read): its result would be stored under the old content's key; run apply again", path, short(want), short(got))
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
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
			dig = b.keyedDigest(data)
			b.tainted = true
		}
		b.inputs = append(b.inputs, Input{Type: InputVariable, Name: "variable " + n, Digest: dig, Explain: true})
	}
}

// Sum returns the key and the inputs sorted by name. A sensitive part enters the key as its HMAC under the
// key secret instead of its bytes, and its input's digest is that HMAC.
func (b *KeyBuilder) Sum() (state.Key, []Input, error) {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range b.parts {
		data, dig := p.data, Digest(p.data)
		sensitive := !p.public && (b.tainted || b.kc.holdsSecret(p.data))
		if sensitive {
			dig = b.keyedDigest(p.data)
			data = []byte(dig)
			b.sensitive = true
		}
		b.inputs[p.input].Digest = dig
		if b.kc != nil && b.kc.Debug != nil {
			shown := p.data
			if sensitive {
				shown = nil
			}
			b.kc.Debug(b.step, p.name, shown, dig)
		}
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p.name)))])
		h.Write([]byte(p.name))
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(data)))])
		h.Write(data)
	}
	var k state.Key
	copy(k[:], h.Sum(nil))
	sort.SliceStable(b.inputs, func(i, j int) bool { return b.inputs[i].Name < b.inputs[j].Name })
	if b.err != nil {
		return state.Key{}, nil, fmt.Errorf("key of %s: %w", b.step.Addr.ID(), b.err)
	}
	return k, b.inputs, nil
}

// Sensitive tells, after Sum, whether a part of the key held a sensitive value (Step.Sensitive).
func (b *KeyBuilder) Sensitive() bool { return b.sensitive }

// Digest is "sha256:<hex>" of data.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// keyedDigest is a digest that cannot be brute-forced without the key secret, for sensitive values. A
// key context without a secret is an error of its maker (Sum reports it): never a guessable digest.
func (b *KeyBuilder) keyedDigest(data []byte) string {
	if len(b.kc.Salt) == 0 {
		b.err = errors.New("a sensitive value is part of a key, but there is no key secret to hash it with")
	}
	m := hmac.New(sha256.New, b.kc.Salt)
	m.Write(data)
	return "hmac:" + hex.EncodeToString(m.Sum(nil))
}

// holdsSecret tells whether data holds a sensitive value of the configuration, as it is or escaped the way
// JSON, YAML or Go quote strings.
func (kc *KeyContext) holdsSecret(data []byte) bool {
	if kc == nil || kc.Config == nil {
		return false
	}
	for _, sec := range kc.Config.Secrets {
		if sec == "" {
			continue
		}
		q, _ := json.Marshal(sec)
		goq := strconv.Quote(sec)
		forms := []string{sec, string(q[1 : len(q)-1]), goq[1 : len(goq)-1], strings.ReplaceAll(sec, "'", "''")}
		for _, form := range forms {
			if bytes.Contains(data, []byte(form)) {
				return true
			}
		}
	}
	return false
}

package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"gitlab.com/imgform/imgform/internal/state"
)

// What goes into a step's key, and what must stay out.
//
// In: the step kind and its version (kindVersions); the step's resolved configuration in a canonical JSON
// encoding (struct fields in a fixed order, map keys sorted); the content of every file the step reads
// (scripts, uploaded files; userdata files are already content in the configuration); the keys of its
// inputs (the parent disk step, and the seed for boot). For a source: its checksum, never its URL, so that
// a mirror or a local copy of the same image hits the same cache entry (the URL only counts when no checksum
// is declared).
//
// Out: absolute paths and the configuration folder (the same configuration elsewhere gives the same keys),
// timestamps, display names (image names, step labels), output paths, progress and log settings,
// parallelism, timeouts, memory, CPU count and accelerator (they change how fast a step runs, not what it
// makes), and the ephemeral build key (a new key must not invalidate layers; it travels with them).
//
// Variables a step reads are recorded next to the key as explanations (so plan can say "variable packages
// changed") but are not hashed themselves: their effect is already in the resolved configuration, and
// hashing them too would re-run an export when only the output path's version variable changed.

// Input is one named part of a key. Digest is "sha256:<hex>" of the part (a keyed digest for sensitive
// values), never the value itself, so inputs can be stored in the record and printed in plans.
type Input struct {
	Name   string `json:"name"`
	Digest string `json:"digest"`
	// Explain marks inputs kept only to explain changes; they are not part of the key.
	Explain bool `json:"explain,omitempty"`
}

// keyBuilder hashes named parts with length prefixes so that no two different lists of parts give the same
// byte stream.
type keyBuilder struct {
	step   *Step
	parts  []keyPart
	inputs []Input
	debug  func(step *Step, name string, data []byte)
}

type keyPart struct {
	name string
	data []byte
}

func newKeyBuilder(s *Step, debug func(*Step, string, []byte)) *keyBuilder {
	b := &keyBuilder{step: s, debug: debug}
	b.add("kind", []byte(fmt.Sprintf("%s/v%d", s.Kind, kindVersions[s.Kind])))
	return b
}

// add hashes a part into the key and records its digest.
func (b *keyBuilder) add(name string, data []byte) {
	b.parts = append(b.parts, keyPart{name, data})
	b.inputs = append(b.inputs, Input{Name: name, Digest: digest(data)})
	if b.debug != nil {
		b.debug(b.step, name, data)
	}
}

// addJSON hashes the canonical JSON encoding of v.
func (b *keyBuilder) addJSON(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s of %s: %w", name, b.step.ID, err)
	}
	b.add(name, data)
	return nil
}

// addKey hashes the key of an input step.
func (b *keyBuilder) addKey(name string, k state.Key) {
	b.add(name, []byte(k.String()))
}

// explain records a digest that is not part of the key.
func (b *keyBuilder) explain(name, dig string) {
	b.inputs = append(b.inputs, Input{Name: name, Digest: dig, Explain: true})
}

func (b *keyBuilder) sum() state.Key {
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
	return k
}

func digest(data []byte) string {
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

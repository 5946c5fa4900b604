package state

import (
	"encoding/hex"
	"fmt"
)

// KeySize is the length of a [Key] in bytes.
const KeySize = 32

// shortLen is the number of hex digits [Key.Short] shows: 48 bits make a collision between the few hundred
// objects a human looks at at once very unlikely, and the text still fits in a table column.
const shortLen = 12

// Key names an object in the store: the engine's hash of everything that can change a step's result. The
// store does not compute keys; it only files objects under them.
type Key [KeySize]byte

// ParseKey parses the 64 hex digits written by [Key.String].
func ParseKey(s string) (Key, error) {
	var k Key
	// Keys come from files and the command line: quote at most a key's length of what was given.
	shown := s
	if len(shown) > 2*KeySize {
		shown = shown[:2*KeySize] + "..."
	}
	if len(s) != 2*KeySize {
		return k, fmt.Errorf("parse key %q: want %d hex digits, got %d", shown, 2*KeySize, len(s))
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return Key{}, fmt.Errorf("parse key %q: %w", shown, err)
	}
	return k, nil
}

// String returns the key as 64 lowercase hex digits, the form used in file names and JSON.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// Short returns the first 12 hex digits, for messages and tables meant for humans.
func (k Key) Short() string { return k.String()[:shortLen] }

// IsZero reports whether k is the zero key, which means "no key" (for example an object without a parent).
func (k Key) IsZero() bool { return k == Key{} }

// MarshalText encodes k as [Key.String] does, so that keys are hex strings in JSON.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes what MarshalText wrote.
func (k *Key) UnmarshalText(b []byte) error {
	parsed, err := ParseKey(string(b))
	if err != nil {
		return err
	}
	*k = parsed
	return nil
}

// shard returns the name of the folder that holds k among 256: its first byte in hex.
func (k Key) shard() string { return k.String()[:2] }

package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// RecordFormatVersion is the format_version of records this build writes; it reads this version and older.
const RecordFormatVersion = 1

// ErrRecordFormat is wrapped by [Store.LoadRecord] errors about a record this build cannot read, such as
// one written by a newer imgform.
var ErrRecordFormat = errors.New("unsupported record format")

// ErrRecordDamaged is wrapped by [Store.LoadRecord] errors about a record file that is not a record at all
// (cut short, not JSON, a value where a digest belongs): unlike a record of a newer imgform, which must not
// be overwritten, it can only be thrown away. The planner then plans as for a first apply.
var ErrRecordDamaged = errors.New("damaged record")

// Record is what the last apply of one configuration did: for each image, each step with its key, the
// digests of the named inputs that went into the key, and the outputs it wrote. The planner compares it
// with the current configuration to say why a step will run ("script scripts/x.sh changed") and whether an
// output on disk is still the one apply wrote.
//
// A record holds names and digests only. Callers must never put values into it, secret or not: inputs map
// to digests, which SaveRecord enforces. A digest of a guessable secret (a short password) can still be
// brute-forced, so for secrets use a keyed digest or leave the input out.
type Record struct {
	FormatVersion int `json:"format_version"`
	// ID is the configuration ID given to SaveRecord.
	ID string `json:"id"`
	// Applied is when the apply finished.
	Applied time.Time `json:"applied"`
	// Images maps image names to what was built for them.
	Images map[string]*ImageRecord `json:"images"`
}

// ImageRecord is the part of a [Record] about one image.
type ImageRecord struct {
	// Steps in the order the image runs them.
	Steps []StepRecord `json:"steps"`
}

// StepRecord is one step of an image as last applied.
type StepRecord struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Key  Key    `json:"key"`
	// Inputs maps each named input of the key ("script scripts/x.sh", "variable packages", "step seed")
	// to a short digest of its value: lowercase hex of at least 8 digits, optionally prefixed like
	// "sha256:". Never a value.
	Inputs map[string]string `json:"inputs,omitempty"`
	// Outputs the step wrote outside the store, such as exported images.
	Outputs []OutputRecord `json:"outputs,omitempty"`
	// Rebuild is the token that entered the key when the step was built again although its key was cached
	// (-replace: random; refresh_every: derived from the key it replaced). Plans put it into the key again,
	// so the rebuilt result stays cached. Never a value of the configuration.
	Rebuild string `json:"rebuild,omitempty"`
}

// OutputRecord is a file apply wrote outside the store, as it was right after writing.
type OutputRecord struct {
	// Name is the output's name in the configuration, such as "qcow2".
	Name    string    `json:"name,omitempty"`
	Path    string    `json:"path"`
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	// Key is the key of the step that produced the file.
	Key Key `json:"key"`
	// Published maps "KIND REF" of each registry this very file was pushed to (step.PublishTarget) to the
	// manifest digest it got there.
	Published map[string]string `json:"published,omitempty"`
}

// Image returns the record of the named image, or nil.
func (r *Record) Image(name string) *ImageRecord {
	if r == nil {
		return nil
	}
	return r.Images[name]
}

// Step returns the record of the named step, or nil.
func (ir *ImageRecord) Step(name string) *StepRecord {
	if ir == nil {
		return nil
	}
	for i := range ir.Steps {
		if ir.Steps[i].Name == name {
			return &ir.Steps[i]
		}
	}
	return nil
}

// InputChange is a difference between the inputs of a step in two applies.
type InputChange struct {
	Name string
	Old  string // "" when the input is new
	New  string // "" when the input is gone
}

// String says what happened to the input, such as "script scripts/x.sh changed".
func (c InputChange) String() string {
	switch {
	case c.Old == "":
		return c.Name + " added"
	case c.New == "":
		return c.Name + " removed"
	}
	return c.Name + " changed"
}

// CompareInputs lists the inputs whose digests differ between old and cur, sorted by name.
func CompareInputs(old, cur map[string]string) []InputChange {
	var out []InputChange
	for name, o := range old {
		if n := cur[name]; n != o {
			out = append(out, InputChange{Name: name, Old: o, New: n})
		}
	}
	for name, n := range cur {
		if _, ok := old[name]; !ok {
			out = append(out, InputChange{Name: name, New: n})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// digestRE is what an input may map to: a digest, never a value.
var digestRE = regexp.MustCompile(`^([a-z0-9]+:)?[0-9a-f]{8,128}$`)

func (r *Record) validate() error {
	for img, ir := range r.Images {
		if ir == nil {
			return fmt.Errorf("image %q: no record", img)
		}
		for _, st := range ir.Steps {
			for name, d := range st.Inputs {
				if !digestRE.MatchString(d) {
					return fmt.Errorf("image %q step %q input %q: %q is not a digest; records hold digests, never values",
						img, st.Name, name, redact(d))
				}
			}
			for _, o := range st.Outputs {
				if b, err := hex.DecodeString(o.SHA256); err != nil || len(b) != sha256.Size {
					return fmt.Errorf("image %q step %q output %q: bad sha256 %q", img, st.Name, o.Path, o.SHA256)
				}
			}
		}
	}
	return nil
}

// redact shows enough of a rejected input to find it in the code without printing a possible secret.
func redact(s string) string {
	if len(s) <= 4 {
		return "…"
	}
	return s[:2] + "…"
}

// recordName turns a configuration ID (any string, such as an absolute folder path) into a file name.
func recordName(id string) string {
	sum := sha256.Sum256([]byte("imgform record\x00" + id))
	return hex.EncodeToString(sum[:16])
}

func (s *Store) recordPath(id string) string {
	return filepath.Join(s.root, "records", recordName(id)+".json")
}

// SaveRecord replaces the record of the configuration id, atomically. id should be stable for a
// configuration folder across runs (the engine derives it from the folder). rec.FormatVersion and rec.ID
// are filled in; rec itself is not modified.
func (s *Store) SaveRecord(id string, rec *Record) error {
	if id == "" || rec == nil {
		return errors.New("save record: empty id or nil record")
	}
	if err := rec.validate(); err != nil {
		return fmt.Errorf("save record %s: %w", id, err)
	}
	r := *rec
	r.FormatVersion = RecordFormatVersion
	r.ID = id
	b, err := json.MarshalIndent(&r, "", "  ")
	if err != nil {
		return fmt.Errorf("save record %s: %w", id, err)
	}
	if err := fsutil.WriteFileAtomic(s.recordPath(id), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save record %s: %w", id, err)
	}
	return nil
}

// LoadRecord returns the record of the configuration id, or nil without error when there is none (the
// configuration was never applied with this store). A record that cannot be read, or that a newer imgform
// wrote, is an error: the caller should say so rather than plan as if nothing had been applied.
func (s *Store) LoadRecord(id string) (*Record, error) {
	path := s.recordPath(id)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load record of %s: %w", id, err)
	}
	rec, err := parseRecord(b)
	if err == nil {
		err = rec.validate()
	}
	if err != nil {
		if !errors.Is(err, ErrRecordFormat) {
			err = fmt.Errorf("%w (%w): %w", ErrRecordDamaged, ErrRecordFormat, err)
		}
		return nil, fmt.Errorf("load record of %s from %s: %w", id, path, err)
	}
	return rec, nil
}

// RecordProblem is a record file that cannot be read (VerifyRecords).
type RecordProblem struct {
	Path string
	Err  error
}

// VerifyRecords reads every record file of the store and returns those that cannot be read: damaged ones
// (which the next plan of their configuration ignores with a warning) and ones of a newer imgform.
func (s *Store) VerifyRecords() ([]RecordProblem, error) {
	paths, err := filepath.Glob(filepath.Join(s.root, "records", "*.json"))
	if err != nil {
		return nil, err
	}
	var out []RecordProblem
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			out = append(out, RecordProblem{Path: p, Err: err})
			continue
		}
		rec, err := parseRecord(b)
		if err == nil {
			err = rec.validate()
		}
		if err != nil {
			out = append(out, RecordProblem{Path: p, Err: err})
		}
	}
	return out, nil
}

func parseRecord(b []byte) (*Record, error) {
	// Read the version first: a newer format may not even decode into today's types.
	var probe struct {
		FormatVersion *int `json:"format_version"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("%w (%w): not valid JSON: %w", ErrRecordDamaged, ErrRecordFormat, err)
	}
	switch v := probe.FormatVersion; {
	case v == nil:
		return nil, fmt.Errorf("%w (%w): no format_version", ErrRecordDamaged, ErrRecordFormat)
	case *v > RecordFormatVersion:
		return nil, fmt.Errorf("%w: format_version %d was written by a newer imgform "+
			"(this one reads up to %d); upgrade imgform", ErrRecordFormat, *v, RecordFormatVersion)
	case *v < 1:
		return nil, fmt.Errorf("%w (%w): format_version %d", ErrRecordDamaged, ErrRecordFormat, *v)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w (%w): %w", ErrRecordDamaged, ErrRecordFormat, err)
	}
	return &rec, nil
}

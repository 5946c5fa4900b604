package export

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// SumsFile is the name of the checksum file WriteSumEntries maintains, as Debian and others publish it.
const SumsFile = "SHA256SUMS"

// SumEntry is one line of SHA256SUMS: a file name in the folder and its hex SHA-256. An Unverified entry
// (its image's test did not pass) is written as a comment, "# unverified: <hex>  <name>", which
// "sha256sum -c" skips: the sum stays readable, but a deployment that checks the file does not take it.
type SumEntry struct {
	Name       string
	SHA256     string
	Unverified bool
}

// unverifiedPrefix starts the comment line of an unverified entry.
const unverifiedPrefix = "# unverified: "

// WriteSumEntries writes or updates dir/SHA256SUMS in the GNU style of sha256sum ("<hex>  <name>", so
// "sha256sum -c SHA256SUMS" checks it): the given entries replace lines for the same names, lines for
// other files are kept while those files are still there with those sums (see stillListed), and the lines
// are sorted by name. The file is replaced atomically, under an exclusive lock on dir, so that exports
// finishing at the same time, in this process or another, do not lose each other's lines.
//
// Several configurations may export to one folder, each merging its own lines. Keeping the others' lines
// blindly let the file vouch for an output that was removed or replaced since its configuration wrote it,
// and that configuration's next apply may never write again. A line is a claim about a file's bytes, so
// each writer checks the lines it keeps: dropped when the file is gone, not a regular file, or changed to
// other bytes. One SHA256SUMS per folder stays what Debian and others publish and what "sha256sum -c" and
// deployments read; per-output sidecar files would fix the merge but not the published format.
func WriteSumEntries(dir string, entries []SumEntry) (err error) {
	for _, e := range entries {
		if err := checkSumEntry(e); err != nil {
			return fmt.Errorf("write %s: %w", SumsFile, err)
		}
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("write %s: %w", SumsFile, err)
	}
	defer func() { err = errors.Join(err, unlock()) }()
	path := filepath.Join(dir, SumsFile)
	// Every writer of the file holds the lock while its temp file exists, so a temp file seen now was
	// left by a writer that died (kill -9) between creating it and renaming it. Failing to remove one
	// only costs its few bytes, so it does not stop the write.
	_, _ = fsutil.RemoveStaleTemps(path)

	byName := map[string]SumEntry{}
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("write %s: %w", path, err)
	default:
		if err := parseGNUSums(path, old, byName); err != nil {
			return err
		}
	}
	if len(byName) > 0 {
		written, err := writtenAt(path)
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		for name, e := range byName {
			if slices.ContainsFunc(entries, func(n SumEntry) bool { return n.Name == name }) {
				continue // replaced below
			}
			keep, err := stillListed(dir, e, written)
			if err != nil {
				return fmt.Errorf("write %s: checking the line of %s: %w", path, name, err)
			}
			if !keep {
				delete(byName, name)
			}
		}
	}
	for _, e := range entries {
		e.SHA256 = strings.ToLower(e.SHA256)
		byName[e.Name] = e
	}
	names := make([]string, 0, len(byName))
	for name := range byName {
		names = append(names, name)
	}
	slices.SortFunc(names, cmp.Compare)
	var b strings.Builder
	for _, name := range names {
		e := byName[name]
		if e.Unverified {
			b.WriteString(unverifiedPrefix)
		}
		fmt.Fprintf(&b, "%s  %s\n", e.SHA256, name)
	}
	return fsutil.WriteFileAtomic(path, []byte(b.String()), OutputPerm)
}

// stillListed tells whether the line e, read from a SHA256SUMS last written at written, still holds: its
// file is a regular file in dir with that SHA-256. Hashing every output of the folder at every export
// would read gigabytes, so a file is hashed only when it changed since written; otherwise it still has the
// bytes it had when that line was last kept or written, each writer having checked the lines it kept. A
// change is seen in the file's status change time (ctime), which any write, rename or copy onto the name
// moves and which, unlike the modification time that cp -p or rsync -t set to an old date, no user can set.
func stillListed(dir string, e SumEntry, written time.Time) (bool, error) {
	path := filepath.Join(dir, e.Name)
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil
	}
	changed := time.Unix(st.Ctim.Unix())
	if m := time.Unix(st.Mtim.Unix()); m.After(changed) {
		changed = m
	}
	if changed.Before(written) {
		return true, nil
	}
	// The lock on dir is held while hashing, and the caller has no context: an output changed behind
	// imgform's back costs one read of it, once.
	sum, _, err := fsutil.HashFile(context.Background(), path)
	if err != nil {
		return false, err
	}
	return sum == e.SHA256, nil
}

// writtenAt is when the SHA256SUMS at path was last written: the earlier of its modification and status
// change times (a later touch moves both).
func writtenAt(path string) (time.Time, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return time.Time{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	w := time.Unix(st.Mtim.Unix())
	if c := time.Unix(st.Ctim.Unix()); c.Before(w) {
		w = c
	}
	return w, nil
}

// parseGNUSums reads "<hex>  <name>" and "<hex> *<name>" lines, and "# unverified: " lines of such, into
// byName. A line it cannot read is an error rather than dropped: rewriting the file would otherwise delete
// it silently.
func parseGNUSums(path string, data []byte, byName map[string]SumEntry) error {
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		unverified := strings.HasPrefix(line, unverifiedPrefix)
		line = strings.TrimPrefix(line, unverifiedPrefix)
		sum, name, ok := strings.Cut(line, " ")
		if ok && (strings.HasPrefix(name, " ") || strings.HasPrefix(name, "*")) {
			name = name[1:]
		} else {
			ok = false
		}
		e := SumEntry{Name: name, SHA256: strings.ToLower(sum), Unverified: unverified}
		if !ok || checkSumEntry(e) != nil {
			// Anyone who can write the folder wrote the line: quote only its start.
			const maxQuoted = 100
			if len(line) > maxQuoted {
				line = line[:maxQuoted] + "..."
			}
			return fmt.Errorf("%s: line %d is not a GNU-style SHA-256 line (\"<sha256>  <name>\"): %q", path, i+1, line)
		}
		byName[name] = e
	}
	return nil
}

// checkSumEntry rejects what would not round-trip through a GNU sums file: names with a slash (the
// file lists its own folder), a newline or a backslash (which sha256sum escapes), and bad digests.
func checkSumEntry(e SumEntry) error {
	if e.Name == "" || e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\\\n\r") {
		return fmt.Errorf("file name %q cannot be listed: it must be a plain name without slash, backslash or newline", e.Name)
	}
	if b, err := hex.DecodeString(e.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("checksum %q of %s is not a hex SHA-256", e.SHA256, e.Name)
	}
	return nil
}

// lockDir takes an exclusive flock on the folder itself: no lock file is left among the outputs, and
// the kernel drops the lock if the process dies. Each call opens its own descriptor, so goroutines of
// one process exclude each other too.
func lockDir(dir string) (unlock func() error, err error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := fsutil.Flock(d, unix.LOCK_EX); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return func() error {
		return errors.Join(fsutil.Flock(d, unix.LOCK_UN), d.Close())
	}, nil
}

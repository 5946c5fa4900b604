package export

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
// other files are kept, and the lines are sorted by name. The file is replaced atomically, under an
// exclusive lock on dir, so that exports finishing at the same time, in this process or another, do not
// lose each other's lines.
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

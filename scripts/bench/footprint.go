package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// footprint is the disk space of a cache folder.
type footprint struct {
	// DuAllocated and DuApparent are what `du -s -B1` and `du -s -b` print: blocks really allocated, and
	// the sum of file sizes. qcow2 layers and the cached source are sparse, so the two differ.
	DuAllocated, DuApparent int64
	// ByKind is the allocated bytes of the store's objects by the kind of step that made them (fetch,
	// seed, boot, provision, cleanup); "other" is records, locks and leftovers of the work folder.
	ByKind map[string]int64
}

// measureFootprint runs du and walks the store's objects. du is the reference the task asks for; the
// walk only splits the total by step kind, reading each object's meta.json.
func measureFootprint(ctx context.Context, dir string) (footprint, error) {
	var fp footprint
	var err error
	if fp.DuAllocated, err = du(ctx, dir, "-B1"); err != nil {
		return fp, err
	}
	if fp.DuApparent, err = du(ctx, dir, "-b"); err != nil {
		return fp, err
	}
	fp.ByKind = map[string]int64{}
	seen := map[uint64]bool{} // inodes: a hard-linked file counts once, as du counts it
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return err
		}
		if seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		fp.ByKind[objectKind(dir, path)] += st.Blocks * 512
		return nil
	})
	return fp, err
}

// objectKind returns the step kind of the object that path belongs to (objects/<xx>/<key>/...), or
// "other".
func objectKind(root, path string) string {
	rel, err := filepath.Rel(filepath.Join(root, "objects"), path)
	if err != nil || strings.HasPrefix(rel, "..") {
		return "other"
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) < 2 {
		return "other"
	}
	b, err := os.ReadFile(filepath.Join(root, "objects", parts[0], parts[1], "meta.json"))
	if err != nil {
		return "other"
	}
	var m struct {
		Kind string `json:"kind"`
	}
	if json.Unmarshal(b, &m) != nil || m.Kind == "" {
		return "other"
	}
	return m.Kind
}

// du returns the first number du prints for dir with the given unit flag.
func du(ctx context.Context, dir, unit string) (int64, error) {
	out, err := exec.CommandContext(ctx, "du", "-s", unit, dir).Output()
	if err != nil {
		return 0, fmt.Errorf("du %s %s: %w", unit, dir, err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return 0, fmt.Errorf("du %s %s: no output", unit, dir)
	}
	return strconv.ParseInt(f[0], 10, 64)
}

// fileSize is the apparent size of a file.
func fileSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

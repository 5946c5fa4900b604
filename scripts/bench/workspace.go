package main

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// copyConfig copies the configuration folder src to dst, without its dist folder. The bench never builds
// in the repository's examples: outputs land next to the configuration, the record of the last apply is
// keyed by the folder's absolute path, and the incremental build edits the configuration.
func copyConfig(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() && rel == "dist" {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, info.Mode().Perm())
		}
		return nil // no links or devices in the examples
	})
}

// edit is a change of one provisioner, made in the copy of the configuration.
type edit struct {
	File, Old, New string
	What           string // for the report
}

// apply replaces Old by New in File under dir; Old must occur exactly once, so that an edit of the
// example cannot silently make the incremental build a no-op.
func (e edit) apply(dir string) error {
	path := filepath.Join(dir, e.File)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if n := strings.Count(string(b), e.Old); n != 1 {
		return fmt.Errorf("edit of %s: %q occurs %d times, want once (did the example change?)", path, e.Old, n)
	}
	return os.WriteFile(path, []byte(strings.Replace(string(b), e.Old, e.New, 1)), 0o644)
}

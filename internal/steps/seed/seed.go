package seed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// Label is the volume label cloud-init's NoCloud datasource looks for. cloud-init matches it without regard to
// case; the exact lower-case form is what its documentation and genisoimage examples use.
const Label = "cidata"

// FormatVersion changes whenever the bytes Build writes for the same Files change (layout, go-diskfs
// upgrade, normalization). The key of the step that builds a seed must change with it, so that a cached
// seed from an older layout is not reused.
const FormatVersion = 1

// Names of the files at the root of the seed, as cloud-init's NoCloud datasource reads them.
const (
	UserDataName      = "user-data"
	MetaDataName      = "meta-data"
	NetworkConfigName = "network-config"
	VendorDataName    = "vendor-data"
)

// Files is the content of a seed. UserData and MetaData are always written, even when empty, because
// NoCloud wants both files present; NetworkConfig and VendorData are written only when non-empty.
type Files struct {
	UserData      []byte
	MetaData      []byte
	NetworkConfig []byte
	VendorData    []byte
}

// entry is one file of the seed.
type entry struct {
	name string
	data []byte
}

// entries lists the files to write, in a fixed order so everything derived from it is deterministic.
func (f Files) entries() []entry {
	es := []entry{{UserDataName, f.UserData}, {MetaDataName, f.MetaData}}
	if len(f.NetworkConfig) > 0 {
		es = append(es, entry{NetworkConfigName, f.NetworkConfig})
	}
	if len(f.VendorData) > 0 {
		es = append(es, entry{VendorDataName, f.VendorData})
	}
	return es
}

// Build writes the seed ISO for files to destPath. The ISO is built in a temporary file next to destPath,
// synced and renamed into place, and the folder is synced (see fsutil.AtomicFile), so destPath holds
// either its old content or the complete new image, never a partial one. On error or when ctx is
// cancelled nothing new is left behind. The folder of destPath must exist. The file gets mode 0600:
// user-data may hold secrets.
func Build(ctx context.Context, files Files, destPath string) error {
	return build(ctx, files, destPath, nil)
}

// build is Build with a hook that runs once the ISO is in the temporary file, so tests can cancel there.
func build(ctx context.Context, files Files, destPath string, afterWrite func()) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("seed: build %s: %w", destPath, err)
	}
	dir := filepath.Dir(destPath)
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("seed: destination folder of %s: %w", destPath, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("seed: destination folder %s is not a folder", dir)
	}
	out, err := fsutil.CreateAtomic(destPath, 0o600)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := fill(ctx, out.File(), files, afterWrite); err != nil {
		return errors.Join(err, out.Abort())
	}
	if err := out.Commit(); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

// fill writes the ISO into f and checks it.
func fill(ctx context.Context, f *os.File, files Files, afterWrite func()) error {
	if err := writeISO(ctx, f, files.entries(), filepath.Dir(f.Name())); err != nil {
		return fmt.Errorf("seed: write ISO: %w", err)
	}
	if afterWrite != nil {
		afterWrite()
	}
	if err := normalize(f); err != nil {
		return fmt.Errorf("seed: normalize ISO: %w", err)
	}
	if err := verify(f, files.entries()); err != nil {
		return fmt.Errorf("seed: check written ISO: %w", err)
	}
	// A cancel that arrived while writing still wins: the caller asked for nothing to be left behind.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	return nil
}

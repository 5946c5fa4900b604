package seed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// blockSize is the ISO9660 logical block size; 2048 is the only size every reader accepts.
const blockSize = 2048

// staged is called with the scratch folder once the files are in it (tests look at it there).
var staged func(dir string)

// writeISO lays entries out in a scratch folder, the form go-diskfs builds an ISO from, and has go-diskfs
// write the image into out. Rock Ridge gives the files their exact names; Joliet is left off because every
// Linux guest reads Rock Ridge first and a second name tree would only be one more thing to keep right.
//
// The entries hold the user-data, secrets included, and the folder's modes are what the ISO records (0555,
// files 0444), so the folder sits inside a private one (0700) in stageIn, the folder of the ISO being
// written: inside the store's folder of the step, which the next apply sweeps if this one is killed, never
// in the shared /tmp.
func writeISO(ctx context.Context, out *os.File, entries []entry, stageIn string) (err error) {
	private, err := os.MkdirTemp(stageIn, ".seed-stage-*")
	if err != nil {
		return fmt.Errorf("create scratch folder: %w", err)
	}
	defer func() {
		if rmErr := os.RemoveAll(private); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove scratch folder: %w", rmErr))
		}
	}()
	if err := os.Chmod(private, 0o700); err != nil {
		return fmt.Errorf("set scratch folder mode: %w", err)
	}
	work := filepath.Join(private, "cidata")
	if err := os.Mkdir(work, 0o700); err != nil {
		return fmt.Errorf("create scratch folder: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		// 0444: the medium is read-only; Rock Ridge shows this mode inside the guest.
		if err := os.WriteFile(filepath.Join(work, e.name), e.data, 0o444); err != nil {
			return fmt.Errorf("stage %s: %w", e.name, err)
		}
	}
	// Mkdir's and WriteFile's modes went through the umask: set both explicitly so the modes recorded in the
	// image do not depend on the host.
	if err := os.Chmod(work, 0o555); err != nil {
		return fmt.Errorf("set scratch folder mode: %w", err)
	}
	defer func() {
		// RemoveAll needs write permission on the folder to delete its files.
		if chErr := os.Chmod(work, 0o700); chErr != nil && !errors.Is(chErr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("reset scratch folder mode: %w", chErr))
		}
	}()
	for _, e := range entries {
		if err := os.Chmod(filepath.Join(work, e.name), 0o444); err != nil {
			return fmt.Errorf("set mode of %s: %w", e.name, err)
		}
	}
	if staged != nil {
		staged(work)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	fs, err := iso9660.Create(file.New(out, false), 0, 0, blockSize, work)
	if err != nil {
		return fmt.Errorf("create ISO9660 filesystem: %w", err)
	}
	if err := fs.Finalize(iso9660.FinalizeOptions{RockRidge: true, VolumeIdentifier: Label}); err != nil {
		return fmt.Errorf("finalize ISO9660 filesystem: %w", err)
	}
	return nil
}

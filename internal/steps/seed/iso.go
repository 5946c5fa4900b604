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

// writeISO lays entries out in a scratch folder, the form go-diskfs builds an ISO from, and has go-diskfs
// write the image into out. Rock Ridge gives the files their exact names; Joliet is left off because every
// Linux guest reads Rock Ridge first and a second name tree would only be one more thing to keep right.
func writeISO(ctx context.Context, out *os.File, entries []entry) (err error) {
	work, err := os.MkdirTemp("", "imgform-seed-*")
	if err != nil {
		return fmt.Errorf("create scratch folder: %w", err)
	}
	// Finalize removes the scratch folder on success; on any error it is still there.
	defer func() {
		if rmErr := os.RemoveAll(work); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove scratch folder: %w", rmErr))
		}
	}()
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		// 0444: the medium is read-only; Rock Ridge shows this mode inside the guest.
		if err := os.WriteFile(filepath.Join(work, e.name), e.data, 0o444); err != nil {
			return fmt.Errorf("stage %s: %w", e.name, err)
		}
	}
	// MkdirTemp made the folder 0700 and WriteFile's mode went through the umask: set both explicitly
	// so the modes recorded in the image do not depend on the host.
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

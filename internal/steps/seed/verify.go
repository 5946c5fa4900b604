package seed

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// verify reads the finished image back with go-diskfs and checks the label, that the root holds exactly the
// expected names and that each file has the expected content. The image is small, and a seed that cloud-init
// cannot read costs a whole boot before anyone notices, so the check runs on every build.
func verify(img *os.File, want []entry) error {
	fi, err := img.Stat()
	if err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	// Read only reads through ReadAt, so sharing the still-open temporary file is safe.
	fs, err := iso9660.Read(file.New(img, true), fi.Size(), 0, blockSize)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if got := strings.TrimRight(fs.Label(), " \x00"); got != Label {
		return fmt.Errorf("label is %q, want %q", got, Label)
	}
	des, err := fs.ReadDir(".")
	if err != nil {
		return fmt.Errorf("list root: %w", err)
	}
	var got, names []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	for _, e := range want {
		names = append(names, e.name)
	}
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		return fmt.Errorf("root holds %q, want %q", got, names)
	}
	for _, e := range want {
		if err := verifyFile(fs, e); err != nil {
			return err
		}
	}
	return nil
}

func verifyFile(fs *iso9660.FileSystem, e entry) (err error) {
	f, err := fs.Open(e.name)
	if err != nil {
		return fmt.Errorf("open %s: %w", e.name, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", e.name, cerr)
		}
	}()
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read %s: %w", e.name, err)
	}
	if !bytes.Equal(data, e.data) {
		return fmt.Errorf("%s: read back %d bytes that differ from the %d written", e.name, len(data), len(e.data))
	}
	return nil
}

package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// copyFrom returns a fill for Import that copies obj's files, as a pull from a registry would write them.
func copyFrom(obj *Object) func(dir string) error {
	return func(dir string) error {
		for _, f := range obj.Files {
			b, err := os.ReadFile(obj.Path(f.Name))
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, f.Name), b, 0o644); err != nil {
				return err
			}
		}
		return nil
	}
}

// tempFolders lists the temp folders left in key's shard.
func tempFolders(t *testing.T, st *Store, key Key) []string {
	t.Helper()
	entries, err := os.ReadDir(st.shardDir(key))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var temps []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			temps = append(temps, e.Name())
		}
	}
	return temps
}

// remoteChain makes a base and a layer on it in a store of their own: the other machine.
func remoteChain(t *testing.T) (base, layer *Object) {
	t.Helper()
	other, clock := openStore(t)
	base = commit(t, other, testKey("base"), Info{Kind: "fetch", Image: "deb", Step: "fetch"},
		map[string]string{"disk.qcow2": "base bytes"})
	clock.Advance(time.Hour)
	layer = commit(t, other, testKey("layer"), Info{Kind: "disk", Parent: base.Key, Attrs: map[string]string{"format": "qcow2"}},
		map[string]string{"disk.qcow2": "overlay on ../../../base", "id_ed25519": "key"})
	return base, layer
}

func TestImport(t *testing.T) {
	base, layer := remoteChain(t)
	st, clock := openStore(t)
	clock.Advance(24 * time.Hour)

	for _, src := range []*Object{base, layer} {
		obj, err := st.Import(src.Key, src.Meta, copyFrom(src))
		if err != nil {
			t.Fatalf("Import(%s): %v", src.Key.Short(), err)
		}
		got := mustLookup(t, st, src.Key)
		if got.SHA256 != src.SHA256 || obj.SHA256 != src.SHA256 || got.Parent != src.Parent || got.Attrs["format"] != src.Attrs["format"] {
			t.Errorf("imported %+v, want %+v", got.Meta, src.Meta)
		}
		if !got.Created.Equal(src.Created) || !got.LastUsed.Equal(clock.Now()) {
			t.Errorf("Created, LastUsed = %v, %v; want %v (the remote's), %v (now)", got.Created, got.LastUsed,
				src.Created, clock.Now())
		}
		if err := st.Verify(context.Background(), got); err != nil {
			t.Error(err)
		}
		if fi, err := os.Stat(got.Path("disk.qcow2")); err != nil || fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("imported file mode = %v, %v; want read-only", fi.Mode(), err)
		}
	}

	// A second import of a key in the store returns it without transferring anything.
	_, err := st.Import(layer.Key, layer.Meta, func(string) error {
		t.Error("fill called for an object in the store")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestImportRefusesBadFiles(t *testing.T) {
	base, _ := remoteChain(t)
	write := func(files map[string]string) func(string) error {
		return func(dir string) error {
			for name, content := range files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					return err
				}
			}
			return nil
		}
	}
	errFill := errors.New("connection reset")
	tests := map[string]struct {
		fill    func(string) error
		want    error
		message string
	}{
		"corrupted file": {
			fill:    write(map[string]string{"disk.qcow2": "base bytez"}),
			want:    ErrCorrupt,
			message: `file "disk.qcow2" has 10 bytes with sha256`,
		},
		"shorter file": {
			fill:    write(map[string]string{"disk.qcow2": "base"}),
			want:    ErrCorrupt,
			message: "has 4 bytes",
		},
		"extra file": {
			fill:    write(map[string]string{"disk.qcow2": "base bytes", "planted": "x"}),
			want:    ErrCorrupt,
			message: `extra file "planted"`,
		},
		"missing file": {
			fill:    write(nil),
			want:    ErrCorrupt,
			message: `missing file "disk.qcow2"`,
		},
		"not a regular file": {
			fill: func(dir string) error {
				return errors.Join(write(map[string]string{"disk.qcow2": "base bytes"})(dir),
					os.Symlink("/etc/passwd", filepath.Join(dir, "link")))
			},
			message: "not a regular file",
		},
		"fill fails": {
			fill: func(dir string) error {
				return errors.Join(write(map[string]string{"disk.qcow2": "base"})(dir), errFill)
			},
			want: errFill,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			st, _ := openStore(t)
			_, err := st.Import(base.Key, base.Meta, tc.fill)
			if err == nil {
				t.Fatal("Import succeeded")
			}
			t.Log(err)
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error does not wrap %v", tc.want)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error does not say %q", tc.message)
			}
			mustMiss(t, st, base.Key)
			if temps := tempFolders(t, st, base.Key); len(temps) > 0 {
				t.Errorf("temp folders left: %v", temps)
			}
		})
	}
}

func TestImportRefusesBadMeta(t *testing.T) {
	base, _ := remoteChain(t)
	tests := map[string]struct {
		edit func(m *Meta)
		key  Key
		want error
	}{
		"other format":     {edit: func(m *Meta) { m.FormatVersion = 2 }, want: ErrFormatVersion},
		"other key":        {edit: func(m *Meta) {}, key: testKey("other"), want: ErrCorrupt},
		"digest of others": {edit: func(m *Meta) { m.SHA256 = ObjectDigest(nil) }, want: ErrCorrupt},
		"file size lies":   {edit: func(m *Meta) { m.Files[0].Size++ }, want: ErrCorrupt},
		"path in name": {edit: func(m *Meta) {
			m.Files[0].Name = "../../../x"
			m.SHA256 = ObjectDigest(m.Files)
		}, want: ErrCorrupt},
		"no kind": {edit: func(m *Meta) { m.Kind = "" }, want: ErrCorrupt},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			st, _ := openStore(t)
			m := base.Meta
			m.Files = append([]FileSum(nil), base.Files...)
			tc.edit(&m)
			key := base.Key
			if !tc.key.IsZero() {
				key = tc.key
			}
			_, err := st.Import(key, m, func(string) error {
				t.Error("fill called for bad metadata")
				return nil
			})
			t.Log(err)
			if !errors.Is(err, tc.want) {
				t.Errorf("Import error %v does not wrap %v", err, tc.want)
			}
			mustMiss(t, st, key)
		})
	}
}

func TestImportNeedsItsParent(t *testing.T) {
	base, layer := remoteChain(t)
	noFill := func(string) error {
		t.Error("fill called without the parent")
		return nil
	}

	st, _ := openStore(t)
	_, err := st.Import(layer.Key, layer.Meta, noFill)
	t.Log(err)
	if !errors.Is(err, ErrParentMismatch) {
		t.Errorf("missing parent: error %v does not wrap ErrParentMismatch", err)
	}

	// The same key built here with other bytes: an overlay built on the remote's base would be garbage.
	commit(t, st, base.Key, base.Info, map[string]string{"disk.qcow2": "local bytes"})
	_, err = st.Import(layer.Key, layer.Meta, noFill)
	t.Log(err)
	if !errors.Is(err, ErrParentMismatch) || !strings.Contains(err.Error(), layer.ParentSHA256) {
		t.Errorf("other parent: error %v does not wrap ErrParentMismatch and name the sha256 wanted", err)
	}
	mustMiss(t, st, layer.Key)
}

// TestImportConcurrent runs imports of one key and a local build of it at once, all past their checks
// before any commits: every one gets the object, and the store ends with one object and no temp folder.
func TestImportConcurrent(t *testing.T) {
	base, _ := remoteChain(t)
	st, _ := openStore(t)
	const importers = 6

	var started sync.WaitGroup
	started.Add(importers + 1)
	// The local build writes the same content: it is the same step.
	w, err := st.Begin(base.Key, base.Info)
	if err != nil {
		t.Fatal(err)
	}
	if err := copyFrom(base)(w.Dir()); err != nil {
		t.Fatal(err)
	}

	results := make(chan error, importers+1)
	sums := make(chan string, importers+1)
	for range importers {
		go func() {
			obj, err := st.Import(base.Key, base.Meta, func(dir string) error {
				started.Done()
				started.Wait()
				return copyFrom(base)(dir)
			})
			if err == nil {
				sums <- obj.SHA256
			}
			results <- err
		}()
	}
	go func() {
		started.Done()
		started.Wait()
		obj, err := w.Commit()
		if err == nil {
			sums <- obj.SHA256
		}
		results <- err
	}()
	for range importers + 1 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	close(sums)
	for sum := range sums {
		if sum != base.SHA256 {
			t.Errorf("got object %s, want %s", sum, base.SHA256)
		}
	}
	mustLookup(t, st, base.Key)
	if temps := tempFolders(t, st, base.Key); len(temps) > 0 {
		t.Errorf("temp folders left: %v", temps)
	}
}

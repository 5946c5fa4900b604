package seed

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	testUserData = "#cloud-config\nusers:\n  - name: debian\n    groups: adm,sudo\n"
	testMetaData = "instance-id: iid-test\nlocal-hostname: test\n"
)

// buildCases are the seeds the read-back tests build, keyed by case name.
func buildCases() map[string]Files {
	return map[string]Files{
		"minimal": {
			UserData: []byte(testUserData),
			MetaData: []byte(testMetaData),
		},
		"all files": {
			UserData:      []byte(testUserData),
			MetaData:      []byte(testMetaData),
			NetworkConfig: []byte("network:\n  config: disabled\n"),
			VendorData:    []byte("#cloud-config\nruncmd: [true]\n"),
		},
		"empty required files": {
			UserData: []byte{},
			MetaData: nil,
		},
		"large user-data": {
			// 1 MiB plus a byte, so the file ends mid-block, with a pattern that shows misplaced blocks.
			UserData: bytes.Repeat([]byte("0123456789abcdef"), 1<<16+1)[:1<<20+1],
			MetaData: []byte(testMetaData),
		},
		"block-sized user-data": {
			// Exactly 1 MiB: a file that fills its last block, followed by another file.
			UserData:   bytes.Repeat([]byte{'x'}, 1<<20),
			MetaData:   []byte(testMetaData),
			VendorData: []byte("#cloud-config\n"),
		},
	}
}

func TestBuildReadBack(t *testing.T) {
	for name, files := range buildCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			iso := buildISO(t, files)

			label, got := readBackDiskfs(t, iso)
			if label != Label {
				t.Errorf("go-diskfs label = %q, want %q", label, Label)
			}
			if l := pvdLabel(t, iso); l != Label {
				t.Errorf("PVD volume identifier = %q, want %q", l, Label)
			}
			want := wantFiles(files)
			if g, w := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(g, w) {
				t.Fatalf("names = %q, want %q", g, w)
			}
			for n, w := range want {
				if !bytes.Equal(got[n], w) {
					t.Errorf("%s: read back %d bytes that differ from the %d written", n, len(got[n]), len(w))
				}
			}
			fi, err := os.Stat(iso)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size()%blockSize != 0 {
				t.Errorf("size %d is not a whole number of %d-byte blocks", fi.Size(), blockSize)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("mode = %v, want 0600: user-data may hold secrets", perm)
			}
		})
	}
}

func TestBuildReplacesExisting(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "seed.iso")
	if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	files := buildCases()["minimal"]
	if err := Build(context.Background(), files, dest); err != nil {
		t.Fatalf("Build: %v", err)
	}
	if _, got := readBackDiskfs(t, dest); !bytes.Equal(got[UserDataName], files.UserData) {
		t.Errorf("user-data after replace = %q", got[UserDataName])
	}
	assertOnly(t, filepath.Dir(dest), "seed.iso")
}

func TestBuildErrorsLeaveNothing(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := map[string]struct {
		ctx     context.Context
		prepare func(t *testing.T, dir string) (dest string)
		want    []string // files left in dir
		wantIs  error
		wantMsg string
	}{
		"context cancelled before build": {
			ctx:     cancelled,
			prepare: func(t *testing.T, dir string) string { return filepath.Join(dir, "seed.iso") },
			wantIs:  context.Canceled,
		},
		"context cancelled keeps old file": {
			ctx: cancelled,
			prepare: func(t *testing.T, dir string) string {
				dest := filepath.Join(dir, "seed.iso")
				if err := os.WriteFile(dest, []byte("old"), 0o600); err != nil {
					t.Fatal(err)
				}
				return dest
			},
			want:   []string{"seed.iso"},
			wantIs: context.Canceled,
		},
		"destination folder missing": {
			ctx:     context.Background(),
			prepare: func(t *testing.T, dir string) string { return filepath.Join(dir, "missing", "seed.iso") },
			wantIs:  fs.ErrNotExist,
			wantMsg: "destination folder",
		},
		"destination folder is a file": {
			ctx: context.Background(),
			prepare: func(t *testing.T, dir string) string {
				if err := os.WriteFile(filepath.Join(dir, "plain"), nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(dir, "plain", "seed.iso")
			},
			want:    []string{"plain"},
			wantMsg: "not a folder",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			dest := tc.prepare(t, dir)
			err := Build(tc.ctx, buildCases()["minimal"], dest)
			if err == nil {
				t.Fatal("Build succeeded, want an error")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tc.wantMsg)
			}
			assertOnly(t, dir, tc.want...)
			if slices.Contains(tc.want, "seed.iso") {
				if b, err := os.ReadFile(dest); err != nil || string(b) != "old" {
					t.Errorf("old file changed: %q, %v", b, err)
				}
			}
		})
	}
}

func TestBuildCancelledMidwayLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "seed.iso")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sawTemp := false
	err := build(ctx, buildCases()["minimal"], dest, func() {
		// The ISO sits in a temporary file next to dest now; cancel as Ctrl-C would.
		des, err := os.ReadDir(dir)
		sawTemp = err == nil && len(des) == 1 && strings.HasPrefix(des[0].Name(), ".seed.iso.tmp-")
		cancel()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("build error = %v, want context.Canceled", err)
	}
	if !sawTemp {
		t.Error("the hook did not see the temporary file next to dest")
	}
	assertOnly(t, dir)
}

// assertOnly fails unless dir holds exactly the named entries: no temporary files are left behind.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

// Issue 12.3: the scratch folder that holds the user-data (secrets included) while the ISO is made is not in
// the shared temp folder and no other user can reach it: it sits in a private folder (0700) next to the ISO
// being written, and nothing of it is left afterwards.
func TestStagingIsPrivate(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "out", "seed.iso")
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		t.Fatal(err)
	}
	var seen string
	staged = func(dir string) {
		seen = dir
		parent, err := os.Stat(filepath.Dir(dir))
		if err != nil {
			t.Fatal(err)
		}
		if parent.Mode().Perm() != 0o700 {
			t.Errorf("the folder around the staged user-data has mode %v, want 0700", parent.Mode().Perm())
		}
		if b, err := os.ReadFile(filepath.Join(dir, "user-data")); err != nil || !strings.Contains(string(b), "s3cr3t") {
			t.Errorf("staged user-data: %q %v", b, err)
		}
	}
	t.Cleanup(func() { staged = nil })
	if err := Build(context.Background(), Files{UserData: []byte("#cloud-config\npassword: s3cr3t\n"), MetaData: []byte("instance-id: x\n")}, dest); err != nil {
		t.Fatal(err)
	}
	if seen == "" || !strings.HasPrefix(seen, filepath.Dir(dest)+string(filepath.Separator)) || strings.HasPrefix(seen, os.TempDir()+"/imgform-seed") {
		t.Errorf("staged in %q, want a folder next to %s", seen, dest)
	}
	entries, err := os.ReadDir(filepath.Dir(dest))
	if err != nil || len(entries) != 1 || entries[0].Name() != "seed.iso" {
		t.Errorf("left next to the ISO: %v %v", entries, err)
	}
}

package export

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	sumA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	sumB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	sumC = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	// SHA-256 of "hello\n".
	sumHello = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
)

// hexSHA256 is the hex SHA-256 of s.
func hexSHA256(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// Outputs of the table below: their content and its sum.
var (
	contentA, contentB, contentC = "image a\n", "image b\n", "image c\n"
	realA, realB, realC          = hexSHA256(contentA), hexSHA256(contentB), hexSHA256(contentC)
)

func TestWriteSumEntries(t *testing.T) {
	cases := map[string]struct {
		files    map[string]string // outputs in the folder, with their content
		existing string            // "" for no file
		entries  []SumEntry
		want     string
		wantErr  string
	}{
		"new file": {
			entries: []SumEntry{{Name: "b.raw.zst", SHA256: sumB}, {Name: "a.qcow2.zst", SHA256: sumA}},
			want:    sumA + "  a.qcow2.zst\n" + sumB + "  b.raw.zst\n",
		},
		"merge keeps other files": {
			files:    map[string]string{"c.img": contentC, "a.qcow2.zst": contentA},
			existing: realC + "  c.img\n" + realA + "  a.qcow2.zst\n",
			entries:  []SumEntry{{Name: "b.raw.zst", SHA256: sumB}},
			want:     realA + "  a.qcow2.zst\n" + sumB + "  b.raw.zst\n" + realC + "  c.img\n",
		},
		"update replaces the old sum": {
			files:    map[string]string{"a.qcow2.zst": contentB, "c.img": contentC},
			existing: realA + "  a.qcow2.zst\n" + realC + "  c.img\n",
			entries:  []SumEntry{{Name: "a.qcow2.zst", SHA256: strings.ToUpper(realB)}},
			want:     realB + "  a.qcow2.zst\n" + realC + "  c.img\n",
		},
		"binary marker and blank lines are read": {
			files:    map[string]string{"c.img": contentC},
			existing: "\n" + realC + " *c.img\n\n",
			entries:  []SumEntry{{Name: "a", SHA256: sumA}},
			want:     sumA + "  a\n" + realC + "  c.img\n",
		},
		"malformed line is an error": {
			existing: sumC + "  c.img\nSHA256 (x) = " + sumA + "\n",
			entries:  []SumEntry{{Name: "a", SHA256: sumA}},
			wantErr:  "line 2 is not a GNU-style SHA-256 line",
		},
		"an unverified output is a comment sha256sum -c skips": {
			files:    map[string]string{"c.img": contentC},
			existing: realC + "  c.img\n",
			entries:  []SumEntry{{Name: "a.qcow2.zst", SHA256: sumA, Unverified: true}},
			want:     "# unverified: " + sumA + "  a.qcow2.zst\n" + realC + "  c.img\n",
		},
		"an unverified line is read back and can become verified": {
			files:    map[string]string{"c.img": contentC},
			existing: "# unverified: " + sumA + "  a.qcow2.zst\n# unverified: " + realC + "  c.img\n",
			entries:  []SumEntry{{Name: "a.qcow2.zst", SHA256: sumA}},
			want:     sumA + "  a.qcow2.zst\n# unverified: " + realC + "  c.img\n",
		},
		"a line whose file is gone is dropped": {
			files:    map[string]string{"c.img": contentC},
			existing: realA + "  a.qcow2.zst\n# unverified: " + realB + "  b.raw\n" + realC + "  c.img\n",
			entries:  []SumEntry{{Name: "d.raw", SHA256: sumA}},
			want:     realC + "  c.img\n" + sumA + "  d.raw\n",
		},
		"a line whose file no longer matches is dropped": {
			files:    map[string]string{"a.qcow2.zst": "another image\n", "c.img": contentC},
			existing: realA + "  a.qcow2.zst\n" + realC + "  c.img\n",
			entries:  []SumEntry{{Name: "d.raw", SHA256: sumA}},
			want:     realC + "  c.img\n" + sumA + "  d.raw\n",
		},
		"a line whose file is now a folder is dropped": {
			files:    map[string]string{"a.qcow2.zst/": "", "c.img": contentC},
			existing: realA + "  a.qcow2.zst\n" + realC + "  c.img\n",
			entries:  []SumEntry{{Name: "d.raw", SHA256: sumA}},
			want:     realC + "  c.img\n" + sumA + "  d.raw\n",
		},
		"name with a slash": {
			entries: []SumEntry{{Name: "sub/a", SHA256: sumA}},
			wantErr: "must be a plain name",
		},
		"bad digest": {
			entries: []SumEntry{{Name: "a", SHA256: "1234"}},
			wantErr: "is not a hex SHA-256",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, SumsFile)
			if tc.existing != "" {
				if err := os.WriteFile(path, []byte(tc.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// The outputs are written after SHA256SUMS, as when they are replaced after it was written:
			// every one of them is then hashed.
			writeFiles(t, dir, tc.files)
			err := WriteSumEntries(dir, tc.entries)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				if got, _ := os.ReadFile(path); string(got) != tc.existing {
					t.Errorf("the file changed after an error: %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if names := listDir(t, dir); len(names) != len(tc.files)+1 {
				t.Errorf("files left: %v", names)
			}
		})
	}
}

// writeFiles writes files (a name ending in "/" is a folder) into dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		var err error
		if strings.HasSuffix(name, "/") {
			err = os.Mkdir(filepath.Join(dir, name), 0o755)
		} else {
			err = os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestWriteSumEntriesTwoConfigurations: configurations A and B export to the same folder, each merging its
// own line into SHA256SUMS. When A's output is removed, or replaced by other bytes (whatever the replacing
// file's modification time says), B's next write drops A's line instead of vouching for a file that is not
// what A wrote; an output left alone keeps its line. sha256sum -c, when it is installed, agrees after each
// write.
func TestWriteSumEntriesTwoConfigurations(t *testing.T) {
	type op struct {
		do   func(t *testing.T, dir string) // what happens to A's output before B writes again
		want string                         // SHA256SUMS after B's write
	}
	a, b := "a.qcow2", "b.qcow2"
	both := realA + "  " + a + "\n" + realB + "  " + b + "\n"
	onlyB := realB + "  " + b + "\n"
	cases := map[string]op{
		"left alone": {do: func(*testing.T, string) {}, want: both},
		"removed": {do: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, a)); err != nil {
				t.Fatal(err)
			}
		}, want: onlyB},
		"replaced in place": {do: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, a), []byte(contentC), 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: onlyB},
		"replaced by a rename, with an old modification time (cp -p, rsync -t)": {do: func(t *testing.T, dir string) {
			other := filepath.Join(dir, ".other")
			if err := os.WriteFile(other, []byte(contentC), 0o644); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-24 * time.Hour)
			if err := os.Chtimes(other, old, old); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, filepath.Join(dir, a)); err != nil {
				t.Fatal(err)
			}
		}, want: onlyB},
		"rewritten with the same bytes": {do: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, a), []byte(contentA), 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: both},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			// A's apply, then B's, each writing its output and then merging its line.
			writeFiles(t, dir, map[string]string{a: contentA})
			if err := WriteSumEntries(dir, []SumEntry{{Name: a, SHA256: realA}}); err != nil {
				t.Fatal(err)
			}
			writeFiles(t, dir, map[string]string{b: contentB})
			if err := WriteSumEntries(dir, []SumEntry{{Name: b, SHA256: realB}}); err != nil {
				t.Fatal(err)
			}
			checkSums(t, dir, both)
			tc.do(t, dir)
			// B's next apply writes its line again (B's output is unchanged).
			if err := WriteSumEntries(dir, []SumEntry{{Name: b, SHA256: realB}}); err != nil {
				t.Fatal(err)
			}
			checkSums(t, dir, tc.want)
		})
	}
}

// checkSums compares dir's SHA256SUMS with want and, when sha256sum is installed, has it check the files.
func checkSums(t *testing.T, dir, want string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(dir, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("SHA256SUMS holds\n%s\nwant\n%s", got, want)
	}
	if haveTool("sha256sum") {
		cmd := exec.Command("sha256sum", "-c", "--quiet", SumsFile)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, out)
		}
	}
}

// TestWriteSumEntriesConcurrent: concurrent writers lose no line, and sha256sum, when it is installed,
// checks the result against the real files.
func TestWriteSumEntriesConcurrent(t *testing.T) {
	dir := t.TempDir()
	names := []string{"one.raw.zst", "two.qcow2", "three.qcow2.zst", "four.raw", "five.img", "six.img"}
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("hello\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for _, n := range names {
		wg.Go(func() {
			errs <- WriteSumEntries(dir, []SumEntry{{Name: n, SHA256: sumHello}})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(filepath.Join(dir, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(got), "\n"), "\n")
	if len(lines) != len(names) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(names), got)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, sumHello+"  ") {
			t.Errorf("line %q", l)
		}
	}
	if haveTool("sha256sum") {
		cmd := exec.Command("sha256sum", "-c", "--quiet", SumsFile)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, out)
		}
	}
}

// What a deployment does with the file: sha256sum -c checks the verified outputs and skips the unverified
// ones, and fails when only unverified ones are listed.
func TestUnverifiedEntriesAreSkippedBySha256sum(t *testing.T) {
	if _, err := exec.LookPath("sha256sum"); err != nil {
		t.Fatal("sha256sum (coreutils) is needed:", err)
	}
	dir := t.TempDir()
	for name, content := range map[string]string{"good.img": "good", "bad.img": "bad"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	if err := WriteSumEntries(dir, []SumEntry{{Name: "bad.img", SHA256: sum("bad"), Unverified: true}}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "-c", SumsFile)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("sha256sum -c passed with only an unverified output listed:\n%s", out)
	}
	if err := WriteSumEntries(dir, []SumEntry{{Name: "good.img", SHA256: sum("good")}}); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command("sha256sum", "-c", SumsFile)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "good.img: OK") || strings.Contains(string(out), "bad.img") {
		t.Errorf("sha256sum -c: %v\n%s", err, out)
	}
}

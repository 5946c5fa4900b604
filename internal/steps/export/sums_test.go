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
)

const (
	sumA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	sumB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	sumC = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
	// SHA-256 of "hello\n".
	sumHello = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
)

func TestWriteSumEntries(t *testing.T) {
	cases := map[string]struct {
		existing string // "" for no file
		entries  []SumEntry
		want     string
		wantErr  string
	}{
		"new file": {
			entries: []SumEntry{{Name: "b.raw.zst", SHA256: sumB}, {Name: "a.qcow2.zst", SHA256: sumA}},
			want:    sumA + "  a.qcow2.zst\n" + sumB + "  b.raw.zst\n",
		},
		"merge keeps other files": {
			existing: sumC + "  c.img\n" + sumA + "  a.qcow2.zst\n",
			entries:  []SumEntry{{Name: "b.raw.zst", SHA256: sumB}},
			want:     sumA + "  a.qcow2.zst\n" + sumB + "  b.raw.zst\n" + sumC + "  c.img\n",
		},
		"update replaces the old sum": {
			existing: sumA + "  a.qcow2.zst\n" + sumC + "  c.img\n",
			entries:  []SumEntry{{Name: "a.qcow2.zst", SHA256: strings.ToUpper(sumB)}},
			want:     sumB + "  a.qcow2.zst\n" + sumC + "  c.img\n",
		},
		"binary marker and blank lines are read": {
			existing: "\n" + sumC + " *c.img\n\n",
			entries:  []SumEntry{{Name: "a", SHA256: sumA}},
			want:     sumA + "  a\n" + sumC + "  c.img\n",
		},
		"malformed line is an error": {
			existing: sumC + "  c.img\nSHA256 (x) = " + sumA + "\n",
			entries:  []SumEntry{{Name: "a", SHA256: sumA}},
			wantErr:  "line 2 is not a GNU-style SHA-256 line",
		},
		"an unverified output is a comment sha256sum -c skips": {
			existing: sumC + "  c.img\n",
			entries:  []SumEntry{{Name: "a.qcow2.zst", SHA256: sumA, Unverified: true}},
			want:     "# unverified: " + sumA + "  a.qcow2.zst\n" + sumC + "  c.img\n",
		},
		"an unverified line is read back and can become verified": {
			existing: "# unverified: " + sumA + "  a.qcow2.zst\n# unverified: " + sumC + "  c.img\n",
			entries:  []SumEntry{{Name: "a.qcow2.zst", SHA256: sumA}},
			want:     sumA + "  a.qcow2.zst\n# unverified: " + sumC + "  c.img\n",
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
			if names := listDir(t, dir); len(names) != 1 {
				t.Errorf("files left: %v", names)
			}
		})
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

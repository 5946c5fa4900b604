//go:build drills

package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The drill configurations themselves are valid and formatted (a preflight for the other drills).
func TestDrill0Configurations(t *testing.T) {
	for _, o := range []drillConfigOptions{{}, {Secret: "drill0secret"}} {
		d := newDrill(t, o)
		if r := d.run(2*time.Minute, "validate"); r.code != 0 {
			t.Errorf("%+v: %s\n%s", o, r, r.stderr)
		}
		if r := d.run(2*time.Minute, "fmt", "-check"); r.code != 0 {
			t.Errorf("%+v: %s\n%s%s", o, r, r.stdout, r.stderr)
		}
		if r := d.run(5*time.Minute, "plan"); r.code != 0 || strings.Contains(r.all(), "drill0secret") {
			t.Errorf("%+v: %s\n%s", o, r, r.all())
		}
	}
}

// Drill 6: configuration and source errors. Each gives a clear error (the message names what is wrong,
// and file:line:col when the value comes from the configuration), a non-zero exit, and leaves nothing
// half-written: no fetch object, no interrupted write in the cache, no output, cache verify clean.
func TestDrill6ConfigErrors(t *testing.T) {
	d := newDrill(t, drillConfigOptions{})
	cfgFile := filepath.Join(d.dir, "debian-12-base.imgform.hcl")
	original, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	varsFile := filepath.Join(d.dir, "drill.auto.imgvars.hcl")
	originalVars, err := os.ReadFile(varsFile)
	if err != nil {
		t.Fatal(err)
	}
	setVars := func(url, checksum string) {
		t.Helper()
		if err := os.WriteFile(varsFile, []byte(fmt.Sprintf("source_url      = %q\nsource_checksum = %q\n", url, checksum)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	restore := func() {
		t.Helper()
		if err := os.WriteFile(cfgFile, original, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(varsFile, originalVars, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A loopback server with the test image, a sums file that is an HTML error page, one that is cut off
	// in the middle of a line and one that does not list the image.
	img := d.img
	mux := http.NewServeMux()
	mux.HandleFunc("/images/debian.qcow2", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, img) })
	mux.HandleFunc("/images/HTML.SHA256SUMS", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<!DOCTYPE html>\n<html><body>Mirror maintenance</body></html>\n")
	})
	mux.HandleFunc("/images/TRUNCATED.SHA256SUMS", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  other.qcow2\n651df01786476f84a6acfc79eb72c8")
	})
	mux.HandleFunc("/images/OTHER.SHA256SUMS", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  other.qcow2\n")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// expectError runs validate, plan and apply and checks which of them fail and with what.
	type want struct {
		validateFails bool     // the configuration itself is wrong (load time)
		planFails     bool     // plan needs the value (sums files are read at plan time)
		contains      []string // in apply's stderr
	}
	check := func(t *testing.T, name string, w want) {
		t.Helper()
		r := d.run(2*time.Minute, "validate")
		if w.validateFails != (r.code != 0) {
			t.Errorf("%s: validate: %s\n%s", name, r, r.stderr)
		}
		r = d.run(5*time.Minute, "plan")
		if w.planFails != (r.code != 0) {
			t.Errorf("%s: plan: %s\n%s", name, r, r.stderr)
		}
		for _, args := range [][]string{{"apply"}, {"apply", "-json"}} {
			r = d.run(20*time.Minute, args...)
			if r.code != 1 {
				t.Errorf("%s: %s, want exit 1\n%s", name, r, r.stderr)
			}
			msg := r.stderr
			if hasArg(args, "-json") {
				// The failed step's error is in the step_finished event; the final error on stderr.
				for _, e := range parseEvents(r.stdout) {
					if e.Type == "step_finished" && e.Status == "failed" {
						msg += "\n" + e.Error
					}
				}
			}
			for _, s := range w.contains {
				if !strings.Contains(msg, s) {
					t.Errorf("%s: %s: the error lacks %q:\n%s", name, strings.Join(args, " "), s, msg)
				}
			}
			if strings.Contains(r.stderr, "panic") {
				t.Errorf("%s: panic:\n%s", name, r.stderr)
			}
		}
		// Nothing half-written: no source in the cache (so the next plan fetches again), no interrupted
		// write, no output.
		for step, o := range d.objects() {
			if o.Kind == "fetch" || o.Kind == "boot" {
				t.Errorf("%s: a %s object was committed for %s", name, o.Kind, step)
			}
		}
		if left := d.tempLeftovers(); len(left) > 0 {
			t.Errorf("%s: interrupted writes left in the cache: %v", name, left)
		}
		if _, err := os.Stat(d.outDir()); !os.IsNotExist(err) {
			t.Errorf("%s: the output folder exists: %v", name, err)
		}
		d.verifyClean(name)
	}

	t.Run("sums file is an HTML page", func(t *testing.T) {
		defer restore()
		setVars(srv.URL+"/images/debian.qcow2", "file:"+srv.URL+"/images/HTML.SHA256SUMS")
		check(t, "HTML sums", want{planFails: true, contains: []string{
			"malformed sums file " + srv.URL + "/images/HTML.SHA256SUMS", "line 1", "<!DOCTYPE html>",
		}})
	})
	t.Run("sums file cut off", func(t *testing.T) {
		defer restore()
		setVars(srv.URL+"/images/debian.qcow2", "file:"+srv.URL+"/images/TRUNCATED.SHA256SUMS")
		check(t, "truncated sums", want{planFails: true, contains: []string{
			"malformed sums file", "line 2", "651df01786476f84a6acfc79eb72c8",
		}})
	})
	t.Run("sums file without the image", func(t *testing.T) {
		defer restore()
		setVars(srv.URL+"/images/debian.qcow2", "file:"+srv.URL+"/images/OTHER.SHA256SUMS")
		check(t, "sums without the image", want{planFails: true, contains: []string{
			"no entry for debian.qcow2", "other.qcow2",
		}})
	})
	t.Run("local sums file malformed", func(t *testing.T) {
		defer restore()
		if err := os.WriteFile(filepath.Join(d.dir, "local.SHA256SUMS"), []byte("# sums\nSHA256 (debian.qcow2) = 1234\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		setVars(img, "file:./local.SHA256SUMS")
		check(t, "local malformed sums", want{planFails: true, contains: []string{
			"malformed sums file", "local.SHA256SUMS", "line 2", "a SHA256 digest has 64 hex digits, this one has 4",
		}})
	})
	t.Run("source is a text file", func(t *testing.T) {
		defer restore()
		text := []byte(strings.Repeat("This is a README, not a disk image.\n", 100))
		path := filepath.Join(d.dir, "README.qcow2")
		if err := os.WriteFile(path, text, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(text)
		setVars(path, "sha256:"+hex.EncodeToString(sum[:]))
		check(t, "text source", want{contains: []string{"fetch", "README.qcow2", "not a disk image"}})
	})
	t.Run("source is a text file of whole sectors", func(t *testing.T) {
		defer restore()
		text := []byte(strings.Repeat("0123456789abcdef", 32*64)) // 32 KiB, no boot signature
		path := filepath.Join(d.dir, "notes.img")
		if err := os.WriteFile(path, text, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(text)
		setVars(path, "sha256:"+hex.EncodeToString(sum[:]))
		check(t, "sector-sized text source", want{contains: []string{"notes.img", "not a disk image"}})
	})
	// Issue 12: a mirror (which also serves the sums file, so the checksum matches) hands out a qcow2 image
	// whose header names a file of the build host. QEMU would open that file and the export would copy its
	// bytes into the image; imgform refuses the source at the fetch, before any qemu tool opens it.
	for name, opts := range map[string][]string{
		"a backing file":        {"-b", "/etc/hostname", "-F", "raw"},
		"an external data file": {"-o", "data_file=/etc/hostname,data_file_raw=on"},
	} {
		t.Run("hostile source with "+name, func(t *testing.T) {
			defer restore()
			evilDir := t.TempDir()
			evil := filepath.Join(evilDir, "evil.qcow2")
			args := append(append([]string{"create", "-q", "-f", "qcow2"}, opts...), evil, "2G")
			if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img %v: %v\n%s", args, err, out)
			}
			data, err := os.ReadFile(evil)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if err := os.WriteFile(filepath.Join(evilDir, "SHA256SUMS"), []byte(hex.EncodeToString(sum[:])+"  evil.qcow2\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			evilSrv := httptest.NewServer(http.FileServer(http.Dir(evilDir)))
			defer evilSrv.Close()
			setVars(evilSrv.URL+"/evil.qcow2", "file:"+evilSrv.URL+"/SHA256SUMS")
			check(t, "hostile source ("+name+")", want{contains: []string{"fetch", "QEMU would read", "qemu-img convert -O qcow2"}})
			noQEMU(t, d.cache, 10*time.Second)
		})
	}
	t.Run("disk_size smaller than the source", func(t *testing.T) {
		defer restore()
		changed := strings.Replace(string(original), `disk_size   = "4GiB"`, `disk_size   = "1GiB"`, 1)
		if changed == string(original) {
			t.Fatal("the example's disk_size changed; update this drill")
		}
		if err := os.WriteFile(cfgFile, []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, "small disk_size", want{contains: []string{
			"disk_size 1GiB is smaller than the source image's virtual size", "2147483648",
			// Where the value comes from: the disk_size attribute (docs/reliability.md, drill 6).
			"debian-12-base.imgform.hcl:",
		}})
	})
	t.Run("checksum of the wrong length", func(t *testing.T) {
		defer restore()
		setVars(img, "sha256:651df01786476f84a6acfc79eb72c8")
		// The position is where the variable is used, as Terraform does: the example's checksum line.
		line := 1 + strings.Count(string(original[:bytes.Index(original, []byte("checksum = var.source_checksum"))]), "\n")
		check(t, "short checksum", want{validateFails: true, planFails: true, contains: []string{
			fmt.Sprintf("debian-12-base.imgform.hcl:%d:16: Error: Invalid checksum", line), "a sha256 checksum has 64 hex digits, this one has 30",
		}})
	})
}

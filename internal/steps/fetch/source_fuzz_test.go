package fetch

import (
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Errors about configuration strings (a source address, a checksum) quote what the user wrote, so that it
// can be found; they may do so at most twice, and never with a password in it.
func maxConfigErrLen(in string) int { return 2*len(strconv.Quote(in)) + 400 }

var (
	// fuzzUserinfo matches the start of a URL up to the colon before a password: "[getter::]scheme://user:".
	fuzzUserinfo = regexp.MustCompile(`^(?:[A-Za-z0-9]+::)?[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:$`)
	// fuzzSecret is a password worth looking for in messages.
	fuzzSecret = regexp.MustCompile(`^[A-Za-z0-9]{8,}$`)
)

// FuzzParseSource checks the source address parser on raw = prefix + secret + rest. What it accepts is
// either an absolute, clean local path or an http(s) URL with a host that names a file; what it shows
// (its display form and its errors) never holds the password of a URL. The secret part only matters when
// prefix ends in "scheme://user:" and rest starts with "@", making secret the URL's password.
func FuzzParseSource(f *testing.F) {
	add := func(prefix, secret, rest string, base bool) { f.Add(prefix, secret, rest, base) }
	add("https://user:", "hunter2secret", "@example.com/images/debian.qcow2", false)
	add("http::https://u:", "Secret123", "@example.com/a/b.raw?x=1", false)
	add("https://u:", "Secret123", "@example.com/a//b.raw", false)
	add("https://u:", "Secret123", "@/x", false)
	add("https://u:", "Secret123", "@example.com/%zz", false)
	add("ftp://u:", "Secret123", "@example.com/%zz", false)
	add("s3::https://u:", "Secret123", "@s3.amazonaws.com/b/k", false)
	add("file://u:", "Secret123", "@otherhost/etc/passwd", false)
	add("file::file://u:", "Secret123", "@localhost/x", false)
	add("file:", "rel", "/x.qcow2", true)
	add("images/", "debian", ".qcow2", true)
	add("./", "x", "", false)
	add("github.com/", "a", "/b", false)
	add("git@github.com:", "a", "/b.git", false)
	add("HTTPS://", "example.com", "/x?checksum=sha256:00", false)
	add("", " ", "", false)
	f.Fuzz(func(t *testing.T, prefix, secret, rest string, withBase bool) {
		base := ""
		if withBase {
			base = "/base"
		}
		raw := prefix + secret + rest
		s, err := parseSource(raw, base)
		checkSource(t, raw, s, err)
		if !fuzzUserinfo.MatchString(prefix) || !fuzzSecret.MatchString(secret) || !strings.HasPrefix(rest, "@") {
			return
		}
		// The same input with another password shows what the messages hold anyway (fixed text, the host).
		s2, err2 := parseSource(prefix+"PLACEHOLDER"+rest, base)
		switch {
		case err != nil && strings.Contains(err.Error(), secret) && (err2 == nil || !strings.Contains(err2.Error(), secret)):
			t.Fatalf("error shows the password: %v", err)
		case err == nil && strings.Contains(s.display, secret) && !strings.Contains(s2.display, secret):
			t.Fatalf("display form shows the password: %s", s.display)
		}
	})
}

func checkSource(t *testing.T, raw string, s source, err error) {
	t.Helper()
	if err != nil {
		if n := len(err.Error()); n > maxConfigErrLen(raw) {
			t.Fatalf("error of %d bytes for a source of %d: %.200s...", n, len(raw), err)
		}
		return
	}
	if (s.local == "") == (s.url == nil) {
		t.Fatalf("source %q is both or neither local and remote: %+v", raw, s)
	}
	if s.local != "" {
		if !filepath.IsAbs(s.local) || filepath.Clean(s.local) != s.local || s.display != s.local ||
			s.name != filepath.Base(s.local) || s.getterSrc != "" {
			t.Fatalf("local source %q: %+v", raw, s)
		}
		return
	}
	u := s.url
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Query().Has("checksum") {
		t.Fatalf("remote source %q: scheme %q, host %q, query %q", raw, u.Scheme, u.Host, u.RawQuery)
	}
	if s.name == "" || s.name == "." || s.name == "/" || strings.Contains(s.name, "/") || strings.HasSuffix(u.Path, "/") {
		t.Fatalf("remote source %q names no file: name %q, path %q", raw, s.name, u.Path)
	}
	if pw, ok := u.User.Password(); ok && pw != "redacted" && strings.Contains(s.display, u.User.String()) {
		t.Fatalf("display form %q shows the password of %q", s.display, raw)
	}
	if _, err := url.Parse(s.getterSrc); err != nil {
		t.Fatalf("go-getter gets an unparsable URL %q", s.getterSrc)
	}
}

// FuzzParseChecksum checks the reader of checksum strings: what it accepts is a supported algorithm with
// a lowercase hex value of that algorithm's length, and reads back from its String form unchanged.
func FuzzParseChecksum(f *testing.F) {
	for _, s := range []string{
		"sha256:" + strings.Repeat("aB", 32), strings.Repeat("0", 128), "  md5:" + strings.Repeat("f", 32) + "\n",
		"SHA-1:" + strings.Repeat("1", 40), "sha2-512:" + strings.Repeat("e", 128), "sha384:" + strings.Repeat("a", 96),
		"file:SHA256SUMS", "FILE:https://x/y", "sha256:", ":", strings.Repeat("a", 63), "sha256:" + strings.Repeat("g", 64),
		"sha256:sha256:" + strings.Repeat("a", 64), strings.Repeat("a", 10000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseChecksum(s)
		if err != nil {
			if n := len(err.Error()); n > maxConfigErrLen(s) {
				t.Fatalf("error of %d bytes for a checksum of %d: %.200s...", n, len(s), err)
			}
			return
		}
		if c.IsZero() || c.Type.hexLen() == 0 || len(c.Value) != c.Type.hexLen() || c.Value != strings.ToLower(c.Value) {
			t.Fatalf("ParseChecksum(%q) = %q", s, c)
		}
		if _, ok := algorithmFromName(string(c.Type)); !ok {
			t.Fatalf("ParseChecksum(%q): type %q", s, c.Type)
		}
		back, err := ParseChecksum(c.String())
		if err != nil || back != c {
			t.Fatalf("ParseChecksum(%q) = %q, read back as %q, %v", s, c, back, err)
		}
		if !strings.Contains(strings.ToLower(s), c.Value) {
			t.Fatalf("ParseChecksum(%q): value %q is not in the input", s, c.Value)
		}
	})
}

// maxSumsErrLen bounds the message of an error about a sums file, which comes from the image's mirror:
// it names the file, the line and the reason, and quotes only a little of what the mirror sent.
const maxSumsErrLen = 4096

// FuzzMatchSums checks the sums file path as a whole, the way ResolveChecksum takes it after the download:
// the digest it picks for an image is listed in the file for that image, reads back as a checksum, and
// no error repeats an unbounded part of the file.
func FuzzMatchSums(f *testing.F) {
	h := strings.Repeat("ab", 32)
	f.Add(h+"  debian.qcow2\n"+strings.Repeat("cd", 64)+"  debian.qcow2\n", "debian.qcow2")
	f.Add("SHA256 (./debian.qcow2) = "+strings.ToUpper(h)+"\nSHA384 (debian.qcow2) = "+strings.Repeat("1", 96)+"\n", "debian.qcow2")
	f.Add("SHA384 (debian.qcow2) = "+strings.Repeat("1", 96)+"\n", "debian.qcow2")
	f.Add(h+"  a\n"+strings.Repeat("ef", 32)+"  a\n", "a")
	f.Add(h+"\n", "anything")
	f.Add(h+"  other\n", "debian.qcow2")
	var long strings.Builder
	for c := 'a'; c < 'a'+30; c++ {
		long.WriteString(h + "  " + strings.Repeat(string(c), 2000) + "\n")
	}
	f.Add(long.String(), "debian.qcow2")
	f.Add("<html>"+strings.Repeat("x", 20000)+"</html>\n", "debian.qcow2")
	f.Add(strings.Repeat("SHA"+strings.Repeat("9", 3000)+" (debian.qcow2) = 00\n", 5), "debian.qcow2")
	f.Fuzz(func(t *testing.T, data, name string) {
		if name == "" {
			return // an image's name is never empty (parseSource refuses such a source)
		}
		const file = "https://mirror.example/debian/SHA256SUMS"
		entries, err := parseSums(file, []byte(data))
		var c Checksum
		if err == nil {
			c, err = matchSums(file, name, "", entries)
		}
		if err != nil {
			if n := len(err.Error()); n > maxSumsErrLen+len(name) {
				t.Fatalf("error of %d bytes: %.200s...", n, err)
			}
			return
		}
		if back, err := ParseChecksum(c.String()); err != nil || back != c {
			t.Fatalf("picked %q, which reads back as %q, %v", c, back, err)
		}
		listed := false
		for _, e := range entries {
			n := strings.TrimPrefix(e.name, "./")
			listed = listed || (e.hex == c.Value && (n == "" || n == name))
		}
		if !listed || !strings.Contains(strings.ToLower(data), c.Value) {
			t.Fatalf("picked %q, which the file does not list for %q", c, name)
		}
	})
}

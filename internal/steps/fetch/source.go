package fetch

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	getter "github.com/hashicorp/go-getter"
)

// source is a Request.URL (or the URL of a sums file) made sense of with go-getter's own detection, so that
// what counts as a local file here is exactly what go-getter would treat as one.
type source struct {
	getterSrc string   // the detected go-getter source string, forced getter prefix included
	local     string   // the absolute path when the source is a local file, else ""
	url       *url.URL // the parsed URL, without a forced getter prefix
	display   string   // for messages: the URL with passwords redacted, or the local path
	name      string   // the file name the source ends in
}

// forcedGetter matches go-getter's "getter::url" syntax (get.go keeps its own copy unexported).
var forcedGetter = regexp.MustCompile(`^([A-Za-z0-9]+)::(.+)$`)

// parseSource resolves raw against baseDir. Relative paths need a baseDir: go-getter deliberately does not
// default to the working directory, and neither do we, so that a config means the same from any folder.
func parseSource(raw, baseDir string) (source, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return source{}, errors.New("empty source URL")
	}
	if baseDir != "" {
		abs, err := filepath.Abs(baseDir)
		if err != nil {
			return source{}, fmt.Errorf("base directory %s: %w", baseDir, err)
		}
		baseDir = abs
	}
	detected, err := getter.Detect(raw, baseDir, getter.Detectors)
	if err != nil {
		if baseDir == "" && !filepath.IsAbs(raw) && !strings.Contains(raw, "://") {
			return source{}, fmt.Errorf("source %q is a relative path but the request has no base directory", raw)
		}
		return source{}, fmt.Errorf("source %q: %w", raw, err)
	}
	s := source{getterSrc: detected}
	forced, rest := "", detected
	if m := forcedGetter.FindStringSubmatch(detected); m != nil {
		forced, rest = m[1], m[2]
	}
	u, err := url.Parse(rest)
	if err != nil {
		return source{}, fmt.Errorf("source %q: %w", raw, err)
	}
	s.url = u
	if forced == "file" || (forced == "" && u.Scheme == "file") {
		return localSource(s, raw, baseDir)
	}
	if u.Query().Has("checksum") {
		return source{}, fmt.Errorf("source %q carries a checksum query parameter: give the checksum in the request instead", raw)
	}
	s.display = getter.RedactURL(u)
	if forced != "" {
		s.display = forced + "::" + s.display
	}
	// A go-getter "//subdir" names the file inside what the URL fetches (a git repository, say).
	p := u.Path
	if _, sub := getter.SourceDirSubdir(rest); sub != "" {
		p = sub
	}
	s.name = path.Base(p)
	if s.name == "/" || s.name == "." || s.name == "" {
		return source{}, fmt.Errorf("source %s does not name a file", s.display)
	}
	return s, nil
}

// localSource completes s for a file URL: "file:///abs", "file:rel" (opaque, resolved against baseDir), or
// a plain path that go-getter's FileDetector already turned into a file URL.
func localSource(s source, raw, baseDir string) (source, error) {
	u := s.url
	p := u.Path
	switch {
	case u.Opaque != "":
		p = u.Opaque
	case u.Host != "" && u.Host != "localhost":
		return source{}, fmt.Errorf("source %q: a file URL cannot name another host (%s)", raw, u.Host)
	}
	if p == "" {
		return source{}, fmt.Errorf("source %q names no file", raw)
	}
	p = filepath.FromSlash(p)
	if !filepath.IsAbs(p) {
		if baseDir == "" {
			return source{}, fmt.Errorf("source %q is a relative path but the request has no base directory", raw)
		}
		p = filepath.Join(baseDir, p)
	}
	s.local = filepath.Clean(p)
	s.display = s.local
	s.name = filepath.Base(s.local)
	return s, nil
}

// withChecksum adds go-getter's magic "checksum" query parameter, which makes Client.Get verify the file
// after downloading it and strips the parameter before the request goes out.
func (s source) withChecksum(sum Checksum) string {
	if sum.IsZero() {
		return s.getterSrc
	}
	sep := "?"
	if strings.Contains(s.getterSrc, "?") {
		sep = "&"
	}
	return s.getterSrc + sep + "checksum=" + url.QueryEscape(sum.String())
}

// relativeTo returns the path of s relative to the folder of the sums file, when both live on the same
// server (or both are local) and s is below that folder; sums files that cover a tree list such paths.
func (s source) relativeTo(sums source) string {
	if s.local != "" || sums.local != "" {
		if s.local == "" || sums.local == "" {
			return ""
		}
		rel, err := filepath.Rel(filepath.Dir(sums.local), s.local)
		if err != nil || strings.HasPrefix(rel, "..") {
			return ""
		}
		return filepath.ToSlash(rel)
	}
	if s.url.Scheme != sums.url.Scheme || s.url.Host != sums.url.Host {
		return ""
	}
	dir := path.Dir(sums.url.Path)
	if !strings.HasSuffix(dir, "/") {
		dir += "/"
	}
	rel, ok := strings.CutPrefix(s.url.Path, dir)
	if !ok {
		return ""
	}
	return rel
}

// noDecompressors turns off go-getter's unpacking by file extension: the cache stores exactly the bytes
// the checksum covers, and turning an "img.xz" into an image is a step of its own.
var noDecompressors = map[string]getter.Decompressor{}

// newGetters returns fresh getters for one client. Client.Configure calls SetClient on every getter it is
// given, so sharing go-getter's global Getters between concurrent fetches would race and mix their
// contexts and progress listeners.
func newGetters(maxBytes int64) map[string]getter.Getter {
	httpGetter := &getter.HttpGetter{
		Netrc: true, // as go-getter's default getter: credentials from ~/.netrc
		// The HEAD request only serves to resume into an existing partial file. We always download into an
		// empty temp file, so it would be a wasted round trip.
		DoNotCheckHeadFirst: true,
		MaxBytes:            maxBytes,
	}
	return map[string]getter.Getter{
		"file":  &getter.FileGetter{Copy: true}, // a copy, never a symlink into our temp folder
		"git":   new(getter.GitGetter),
		"gcs":   new(getter.GCSGetter),
		"hg":    new(getter.HgGetter),
		"s3":    new(getter.S3Getter),
		"http":  httpGetter,
		"https": httpGetter,
	}
}

package fetch

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	getter "github.com/hashicorp/go-getter/v2"
)

// source is a Request.URL (or the URL of a sums file) made sense of: a remote http(s) URL or a local file.
type source struct {
	getterSrc string   // the URL handed to go-getter; remote sources only
	local     string   // the absolute path when the source is a local file, else ""
	url       *url.URL // the parsed URL of a remote source
	display   string   // for messages: the URL with credentials redacted, or the local path
	name      string   // the file name the source ends in
}

var (
	// forcedGetter matches go-getter's "getter::url" syntax.
	forcedGetter = regexp.MustCompile(`^([A-Za-z0-9]+)::(.+)$`)
	// urlScheme matches the scheme of a URL (RFC 3986); a string without one is a path.
	urlScheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*):`)
)

// shorthands are the scheme-less forms that go-getter's detectors turn into git, S3 or GCS sources. They
// are refused rather than taken for relative paths, which would fail later with a puzzling "no such file".
var shorthands = []struct {
	re    *regexp.Regexp
	kind  string
	https bool // whether "https://" + the source is worth suggesting
}{
	{regexp.MustCompile(`^(github\.com|gitlab\.com|bitbucket\.org)/`), "git", true},
	{regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:`), "git (ssh)", false},
	{regexp.MustCompile(`^[^/]*\.amazonaws\.com/`), "s3", true},
	{regexp.MustCompile(`^[^/]*\.googleapis\.com/`), "gcs", true},
}

// parseSource resolves raw against baseDir. Relative paths need a baseDir: like go-getter, we do not
// default to the working directory, so that a config means the same from any folder. Sources that need a
// getter imgform does not include are refused here, before anything is downloaded (see getter.go).
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
	forced, rest := "", raw
	if m := forcedGetter.FindStringSubmatch(raw); m != nil {
		forced, rest = strings.ToLower(m[1]), m[2]
	}
	scheme := ""
	if m := urlScheme.FindStringSubmatch(rest); m != nil {
		scheme = strings.ToLower(m[1])
	}
	switch forced {
	case "":
	case "http", "https":
		if scheme != "http" && scheme != "https" {
			return source{}, fmt.Errorf("source %q: a %s:: source must be an http:// or https:// URL", redactRaw(raw), forced)
		}
	case "file":
		if scheme != "" && scheme != "file" {
			return source{}, fmt.Errorf("source %q: a file:: source must be a path or a file: URL", redactRaw(raw))
		}
	default:
		return source{}, unsupportedError(raw, forced, "")
	}
	switch scheme {
	case "http", "https":
		return remoteSource(raw, rest)
	case "file":
		return fileURLSource(raw, rest, baseDir)
	case "":
	default:
		return source{}, unsupportedError(raw, scheme, "")
	}
	if forced == "" {
		for _, sh := range shorthands {
			if sh.re.MatchString(rest) {
				hint := "write ./" + rest + " for a local path"
				if sh.https {
					hint = "write https://" + rest + " for a file served over https, or ./" + rest + " for a local path"
				}
				return source{}, unsupportedError(raw, sh.kind, hint)
			}
		}
	}
	return localSource(raw, rest, baseDir)
}

// remoteSource completes an http or https URL.
func remoteSource(raw, rest string) (source, error) {
	u, err := url.Parse(rest)
	if err != nil {
		// The message of a url.Error repeats the URL, which may hold a secret: keep only the reason.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return source{}, fmt.Errorf("source URL cannot be parsed: %w", err)
	}
	s := source{getterSrc: rest, url: u, display: redactURL(u)}
	if u.Host == "" {
		return source{}, fmt.Errorf("source %s names no host", s.display)
	}
	if u.Query().Has("checksum") {
		return source{}, fmt.Errorf("source %s carries a checksum query parameter: give the checksum in the request instead", s.display)
	}
	// go-getter reads "//" in a path as a folder inside an archive to unpack, which a file download would
	// then lose silently.
	if _, sub := getter.SourceDirSubdir(rest); sub != "" {
		return source{}, fmt.Errorf("source %s has \"//\" in its path, which go-getter reads as a folder inside an archive; imgform does not unpack downloads: write the path with single slashes", s.display)
	}
	s.name = path.Base(u.Path)
	if strings.HasSuffix(u.Path, "/") || s.name == "/" || s.name == "." {
		return source{}, fmt.Errorf("source %s does not name a file", s.display)
	}
	return s, nil
}

// fileURLSource completes a file URL: "file:///abs", "file://localhost/abs" or "file:rel" (opaque,
// resolved against baseDir).
func fileURLSource(raw, rest, baseDir string) (source, error) {
	u, err := url.Parse(rest)
	if err != nil {
		var uerr *url.Error // its message repeats the URL, password included
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return source{}, fmt.Errorf("source %q: %w", redactRaw(raw), err)
	}
	p := u.Path
	switch {
	case u.Opaque != "":
		p = u.Opaque
	case u.Host != "" && u.Host != "localhost":
		return source{}, fmt.Errorf("source %q: a file URL cannot name another host (%s)", redactRaw(raw), u.Host)
	}
	if p == "" {
		return source{}, fmt.Errorf("source %q names no file", redactRaw(raw))
	}
	return localSource(raw, filepath.FromSlash(p), baseDir)
}

// localSource completes a local path.
func localSource(raw, p, baseDir string) (source, error) {
	if !filepath.IsAbs(p) {
		if baseDir == "" {
			return source{}, fmt.Errorf("source %q is a relative path but the request has no base directory", redactRaw(raw))
		}
		p = filepath.Join(baseDir, p)
	}
	p = filepath.Clean(p)
	return source{local: p, display: p, name: filepath.Base(p)}, nil
}

// redactRaw renders a source as written, with credentials redacted: as redactURL does when it parses as
// a URL, else by cutting what follows "scheme://user:" up to the last "@" of the authority.
func redactRaw(raw string) string {
	forced, rest := "", raw
	if m := forcedGetter.FindStringSubmatch(raw); m != nil {
		forced, rest = m[1]+"::", m[2]
	}
	if u, err := url.Parse(rest); err == nil && u.Scheme != "" {
		return forced + redactURL(u)
	}
	return forced + rawPassword.ReplaceAllString(rest, "${1}redacted@")
}

// rawPassword matches "scheme://user:password@" in a URL that does not parse.
var rawPassword = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)[^/?#]*@`)

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

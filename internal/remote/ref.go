package remote

import (
	"fmt"
	"net"
	"strings"

	"oras.land/oras-go/v2/registry"
)

// Scheme is how a remote cache's address starts.
const Scheme = "oci://"

// Ref names a remote cache: one repository of an OCI registry, which holds one artifact per step result.
type Ref struct {
	// Host is the registry's host name or IP address, with ":port" when one was given.
	Host string
	// Repository is the repository path, such as "group/project/imgform-cache".
	Repository string
}

// String returns the address in the form Parse reads.
func (r Ref) String() string { return Scheme + r.Host + "/" + r.Repository }

// Parse parses a remote cache address of the form oci://HOST[:PORT]/REPOSITORY. The repository is the cache:
// tags inside it are the cache's business, so an address with a tag or digest is refused.
func Parse(s string) (Ref, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		if i := strings.Index(s, "://"); i >= 0 {
			return Ref{}, fmt.Errorf("remote cache %q: scheme %q is not supported, want %sHOST/REPOSITORY", s, s[:i+3], Scheme)
		}
		return Ref{}, fmt.Errorf("remote cache %q: want %sHOST/REPOSITORY, such as %sregistry.example.com/group/imgform-cache",
			s, Scheme, Scheme)
	}
	host, repo, ok := strings.Cut(rest, "/")
	if !ok || host == "" || repo == "" {
		return Ref{}, fmt.Errorf("remote cache %q: want %sHOST/REPOSITORY, with a repository after the host", s, Scheme)
	}
	if i := strings.IndexAny(repo, "@:"); i >= 0 {
		what := "a tag"
		if repo[i] == '@' {
			what = "a digest"
		}
		return Ref{}, fmt.Errorf("remote cache %q names %s; name only the repository (%s%s/%s): imgform tags the "+
			"artifacts inside it by step key", s, what, Scheme, host, repo[:i])
	}
	ref := registry.Reference{Registry: host, Repository: repo}
	if err := ref.ValidateRegistry(); err != nil {
		return Ref{}, fmt.Errorf("remote cache %q: bad host %q", s, host)
	}
	if err := ref.ValidateRepository(); err != nil {
		return Ref{}, fmt.Errorf("remote cache %q: bad repository name %q: it takes lowercase letters, digits and "+
			"single separators (. _ __ -) between them, in parts separated by /", s, repo)
	}
	return Ref{Host: host, Repository: repo}, nil
}

// isLoopback reports whether host (with or without a port) is this machine: the only registries imgform
// talks plain HTTP to without being told to.
func isLoopback(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

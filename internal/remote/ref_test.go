package remote

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := map[string]struct {
		in   string
		want Ref
		err  string
	}{
		"host and repository":    {in: "oci://registry.example.com/group/imgform-cache", want: Ref{"registry.example.com", "group/imgform-cache"}},
		"port":                   {in: "oci://127.0.0.1:5000/cache", want: Ref{"127.0.0.1:5000", "cache"}},
		"IPv6 loopback":          {in: "oci://[::1]:5000/a/b", want: Ref{"[::1]:5000", "a/b"}},
		"no scheme":              {in: "registry.example.com/cache", err: "want oci://HOST/REPOSITORY"},
		"other scheme":           {in: "https://registry.example.com/cache", err: `scheme "https://" is not supported`},
		"no repository":          {in: "oci://registry.example.com", err: "with a repository after the host"},
		"empty repository":       {in: "oci://registry.example.com/", err: "with a repository after the host"},
		"tag":                    {in: "oci://registry.example.com/cache:latest", err: "names a tag; name only the repository (oci://registry.example.com/cache)"},
		"digest":                 {in: "oci://r.example.com/cache@sha256:" + strings.Repeat("a", 64), err: "names a digest"},
		"uppercase repository":   {in: "oci://registry.example.com/Cache", err: "bad repository name"},
		"double slash":           {in: "oci://registry.example.com/a//b", err: "bad repository name"},
		"trailing separator":     {in: "oci://registry.example.com/cache-", err: "bad repository name"},
		"bad host":               {in: "oci://reg istry/cache", err: "bad host"},
		"GitLab project cache":   {in: "oci://registry.gitlab.com/group/sub/project/imgform-cache", want: Ref{"registry.gitlab.com", "group/sub/project/imgform-cache"}},
		"separators in the name": {in: "oci://h/a.b_c__d---e/f", want: Ref{"h", "a.b_c__d---e/f"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"oci://h/r", "oci://127.0.0.1:5000/a/b", "oci://h/r:t", "oci://[::1]/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(ref.String())
		if err != nil || again != ref {
			t.Fatalf("Parse(%q) = %+v, but Parse of its String() = %+v, %v", s, ref, again, err)
		}
	})
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "127.0.0.1": true, "127.0.0.1:5000": true, "127.1.2.3:80": true,
		"[::1]:5000": true, "::1": true,
		"registry.example.com": false, "10.0.0.1:5000": false, "localhost.example.com": false, "[::2]:5000": false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestTag(t *testing.T) {
	key := testKey("x")
	tag := Tag(key)
	if len(tag) > 128 || !strings.HasPrefix(tag, "step-") {
		t.Errorf("Tag = %q", tag)
	}
	if got, ok := keyOfTag(tag); !ok || got != key {
		t.Errorf("keyOfTag(%q) = %v, %v", tag, got, ok)
	}
	for _, other := range []string{"latest", "step-", "step-xyz", "v1.0"} {
		if _, ok := keyOfTag(other); ok {
			t.Errorf("keyOfTag(%q) took it for a step", other)
		}
	}
}

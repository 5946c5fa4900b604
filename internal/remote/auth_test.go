package remote

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/state"
)

// TestTLSAndCredentials runs a registry with a certificate of its own CA and htpasswd authentication, the
// way a self-hosted registry is set up, and tries each source of credentials against it.
func TestTLSAndCredentials(t *testing.T) {
	ctx := context.Background()
	const user, password = "ci", "s3cret-pass"
	reg := registrytest.Start(t, registrytest.Options{TLS: true, Users: map[string]string{user: password}})
	a := openStore(t)
	obj := commitFiles(t, a, testKey("seed"), state.Info{Kind: "seed"}, map[string][]byte{"seed.iso": noise(50 << 10)})

	c := openCache(t, reg, env{EnvUser: user, EnvPassword: password}, nil)
	if c.repo.PlainHTTP {
		t.Fatal("a TLS registry is reached over plain HTTP")
	}
	if _, err := c.Push(ctx, a, obj, nil); err != nil {
		t.Fatal(err)
	}
	got, err := c.Pull(ctx, openStore(t), obj.Key)
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, got, obj)

	dockerConfig := filepath.Join(t.TempDir(), "config.json")
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	if err := os.WriteFile(dockerConfig, fmt.Appendf(nil, `{"auths": {%q: {"auth": %q}}}`, reg.Host, auth), 0o600); err != nil {
		t.Fatal(err)
	}
	hits := map[string]struct {
		env  env
		edit func(*Options)
	}{
		"GitLab CI's variables for its registry": {
			env: env{envCIRegistry: reg.Host, envCIUser: user, envCIPassword: password},
		},
		"Docker's config.json": {
			edit: func(o *Options) { o.DockerConfig = dockerConfig },
		},
	}
	for name, tc := range hits {
		t.Run(name, func(t *testing.T) {
			c := openCache(t, reg, tc.env, tc.edit)
			if _, ok, err := c.Stat(ctx, obj.Key); err != nil || !ok {
				t.Errorf("Stat = %v, %v; want a hit", ok, err)
			}
		})
	}

	// Docker's credential helpers are programs named docker-credential-NAME on $PATH that answer "get" with
	// the server address on stdin; config.json names one per registry (credHelpers) or one for all
	// (credsStore). A real helper script, speaking that protocol, logs each question it is asked.
	for _, field := range []string{"credHelpers", "credsStore"} {
		t.Run("Docker credential helper in "+field, func(t *testing.T) {
			dir := t.TempDir()
			asked := filepath.Join(dir, "asked")
			helper := fmt.Sprintf(`#!/bin/sh
[ "$1" = get ] || exit 1
read -r server
echo "$server" >> %q
printf '{"ServerURL":"%%s","Username":"%s","Secret":"%s"}\n' "$server"
`, asked, user, password)
			if err := os.WriteFile(filepath.Join(dir, "docker-credential-imgformtest"), []byte(helper), 0o755); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
			config := fmt.Sprintf(`{"credHelpers": {%q: "imgformtest"}}`, reg.Host)
			if field == "credsStore" {
				config = `{"credsStore": "imgformtest"}`
			}
			path := filepath.Join(dir, "config.json")
			if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			c := openCache(t, reg, nil, func(o *Options) { o.DockerConfig = path })
			if _, ok, err := c.Stat(ctx, obj.Key); err != nil || !ok {
				t.Fatalf("Stat = %v, %v; want a hit", ok, err)
			}
			got, err := os.ReadFile(asked)
			if err != nil || strings.TrimSpace(string(got)) == "" {
				t.Fatalf("the helper was not asked: %v", err)
			}
			if !strings.Contains(string(got), reg.Host) {
				t.Errorf("the helper was asked for %q; want %s", got, reg.Host)
			}
			if d := c.creds.describe(); !strings.Contains(d, path) {
				t.Errorf("credentials described as %q; want the config file named", d)
			}
		})
	}

	refusals := map[string]struct {
		env  env
		says []string
	}{
		"wrong password": {
			env:  env{EnvUser: user, EnvPassword: "wrong-pass"},
			says: []string{`refused IMGFORM_REGISTRY_USER (user "ci")`, "check the user name and password"},
		},
		"no credentials": {
			says: []string{"wants credentials and none were found", "docker login " + reg.Host},
		},
		"GitLab CI's variables for another registry": {
			env:  env{envCIRegistry: "registry.gitlab.com", envCIUser: user, envCIPassword: password},
			says: []string{"none were found"},
		},
	}
	for name, tc := range refusals {
		t.Run(name, func(t *testing.T) {
			c := openCache(t, reg, tc.env, nil)
			_, ok, err := c.Stat(ctx, obj.Key)
			if ok || !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("Stat = %v, %v; want an error wrapping ErrUnauthorized", ok, err)
			}
			t.Log(err)
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q", s)
				}
			}
			if strings.Contains(err.Error(), "wrong-pass") || strings.Contains(err.Error(), password) {
				t.Error("error shows a password")
			}
		})
	}

	t.Run("unknown CA", func(t *testing.T) {
		_, err := tryOpen(t, reg, env{}, func(o *Options) { o.CAFile = "" })
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) || !strings.Contains(err.Error(), "-remote-cache-ca") {
			t.Fatalf("Open without the CA: %v; want an unknown-authority error that points to -remote-cache-ca", err)
		}
		t.Log(err)
	})
}

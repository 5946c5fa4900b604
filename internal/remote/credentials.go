package remote

import (
	"context"
	"fmt"
	"os"
	"sync"

	"oras.land/oras-go/v2/registry/remote/auth"
	orascreds "oras.land/oras-go/v2/registry/remote/credentials"
)

// credentials finds the credentials for one registry host and remembers where they came from, so that a
// refusal can say what was tried.
type credentials struct {
	host         string
	getenv       func(string) string
	dockerConfig string

	mu     sync.Mutex
	source string // description of the last credentials handed out
}

func newCredentials(host string, opts Options) (*credentials, error) {
	cr := &credentials{host: host, getenv: opts.Getenv, dockerConfig: opts.DockerConfig}
	if cr.dockerConfig == "" {
		dir := opts.Getenv("DOCKER_CONFIG")
		if dir == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				home = "~"
			}
			dir = home + "/.docker"
		}
		cr.dockerConfig = dir + "/config.json"
	}
	user, pass := opts.Getenv(EnvUser), opts.Getenv(EnvPassword)
	if (user == "") != (pass == "") {
		return nil, fmt.Errorf("set both %s and %s, or neither", EnvUser, EnvPassword)
	}
	return cr, nil
}

// Environment variables that carry credentials. CI_REGISTRY_USER and CI_REGISTRY_PASSWORD are those GitLab CI
// sets for the project's own registry, $CI_REGISTRY; they are used for that host only.
const (
	EnvUser       = "IMGFORM_REGISTRY_USER"
	EnvPassword   = "IMGFORM_REGISTRY_PASSWORD"
	envCIRegistry = "CI_REGISTRY"
	envCIUser     = "CI_REGISTRY_USER"
	envCIPassword = "CI_REGISTRY_PASSWORD"
)

// get is the auth.CredentialFunc: $IMGFORM_REGISTRY_USER first, then GitLab CI's variables for its own
// registry, then Docker's config.json and credential helpers.
func (cr *credentials) get(ctx context.Context, hostport string) (auth.Credential, error) {
	cred, source, err := cr.find(ctx, hostport)
	cr.mu.Lock()
	cr.source = source
	cr.mu.Unlock()
	return cred, err
}

func (cr *credentials) find(ctx context.Context, hostport string) (auth.Credential, string, error) {
	if user := cr.getenv(EnvUser); user != "" {
		return auth.Credential{Username: user, Password: cr.getenv(EnvPassword)},
			fmt.Sprintf("%s (user %q)", EnvUser, user), nil
	}
	if ci := cr.getenv(envCIRegistry); ci != "" && ci == hostport {
		if user := cr.getenv(envCIUser); user != "" {
			return auth.Credential{Username: user, Password: cr.getenv(envCIPassword)},
				fmt.Sprintf("%s (user %q)", envCIUser, user), nil
		}
	}
	store, err := newDockerStore(cr.dockerConfig)
	if err != nil {
		return auth.EmptyCredential, "Docker's " + cr.dockerConfig, fmt.Errorf("read Docker credentials: %w", err)
	}
	cred, err := store.Get(ctx, dockerServerAddress(hostport))
	if err != nil {
		return auth.EmptyCredential, "Docker's " + cr.dockerConfig,
			fmt.Errorf("Docker credentials for %s from %s: %w", hostport, cr.dockerConfig, err)
	}
	if cred == auth.EmptyCredential {
		ci := "unset"
		if v := cr.getenv(envCIRegistry); v != "" {
			ci = fmt.Sprintf("%q, another host", v)
		}
		return cred, fmt.Sprintf("%s is unset, %s is %s, and %s has nothing for %s", EnvUser, envCIRegistry, ci,
			cr.dockerConfig, hostport), nil
	}
	what := "token"
	if cred.Username != "" {
		what = fmt.Sprintf("user %q", cred.Username)
	}
	return cred, fmt.Sprintf("Docker credentials for %s from %s (%s)", hostport, cr.dockerConfig, what), nil
}

// describe says which credentials were last handed to the registry.
func (cr *credentials) describe() string {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.source == "" {
		return "no credentials (the registry did not ask for any)"
	}
	return cr.source
}

// newDockerStore reads Docker's config.json, which names the credential helpers and may hold credentials
// itself. A missing file is an empty configuration. It is read at each use, as docker does, so that a
// `docker login` during a long apply is seen.
func newDockerStore(path string) (orascreds.Store, error) {
	return orascreds.NewStore(path, orascreds.StoreOptions{})
}

// dockerServerAddress is the key Docker files a registry's credentials under (Docker Hub's is special).
func dockerServerAddress(hostport string) string {
	return orascreds.ServerAddressFromRegistry(hostport)
}

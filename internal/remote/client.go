package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"

	"oras.land/oras-go/v2/registry"
	orasremote "oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// Mode says whether a cache may be written.
type Mode int

const (
	// ReadWrite looks results up, pulls and pushes them. The default.
	ReadWrite Mode = iota
	// ReadOnly looks results up and pulls them; every push is refused. For pipelines that must not write,
	// such as those of merge requests.
	ReadOnly
)

// ParseMode parses "readwrite" or "read".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "readwrite", "":
		return ReadWrite, nil
	case "read":
		return ReadOnly, nil
	}
	return 0, fmt.Errorf("remote cache mode %q: want readwrite or read", s)
}

func (m Mode) String() string {
	if m == ReadOnly {
		return "read"
	}
	return "readwrite"
}

// ErrReadOnly is returned by [Cache.Push] on a cache opened with [ReadOnly].
var ErrReadOnly = errors.New("the remote cache is read-only (mode read)")

// ErrUnauthorized is wrapped by errors of a registry that refused the credentials, or wanted some and found
// none. Its message says which credentials were tried, never their secret.
var ErrUnauthorized = errors.New("registry refused access")

// Options tune [Open]. The zero value is a read-write cache over HTTPS with the system's CAs.
type Options struct {
	Mode Mode
	// Insecure allows plain HTTP to a registry that is not on loopback. HTTPS is tried first anyway.
	Insecure bool
	// CAFile is a PEM file of CA certificates trusted besides the system's, for registries with a private CA.
	CAFile string
	// DockerConfig is the path of Docker's config.json, whose credentials and credential helpers are used.
	// "" means $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
	DockerConfig string
	// Version is imgform's version, sent in the User-Agent and recorded in the artifacts it pushes.
	Version string
	// Parallel bounds the lookups of [Cache.StatMany] that run at once; 0 means 8.
	Parallel int
	// Logf, when set, receives a line for every decision worth explaining later (a skipped blob, a remote
	// entry ignored). nil discards.
	Logf func(format string, args ...any)
	// Getenv reads the environment for credentials; nil means os.Getenv. Tests replace it.
	Getenv func(string) string

	// wrapTransport, set by tests, wraps the HTTP transport to watch or disturb requests.
	wrapTransport func(http.RoundTripper) http.RoundTripper
}

// Cache is a remote step cache: one repository of an OCI registry. It is safe for concurrent use.
type Cache struct {
	ref   Ref
	opts  Options
	repo  *orasremote.Repository
	creds *credentials

	pushed, pulled atomic.Int64
	blobsPushed    atomic.Int64
	blobsSkipped   atomic.Int64
}

// Counters says how much a [Cache] transferred, for reports and benchmarks. Bytes are compressed bytes of
// blobs, as they went over the network; manifests are not counted.
type Counters struct {
	BytesPushed, BytesPulled int64
	// BlobsPushed counts uploaded blobs, BlobsSkipped those the registry had already.
	BlobsPushed, BlobsSkipped int64
}

// Counters returns what the cache transferred since it was opened.
func (c *Cache) Counters() Counters {
	return Counters{
		BytesPushed:  c.pushed.Load(),
		BytesPulled:  c.pulled.Load(),
		BlobsPushed:  c.blobsPushed.Load(),
		BlobsSkipped: c.blobsSkipped.Load(),
	}
}

// Ref returns the cache's address.
func (c *Cache) Ref() Ref { return c.ref }

// Mode returns the mode the cache was opened with.
func (c *Cache) Mode() Mode { return c.opts.Mode }

func (c *Cache) logf(format string, args ...any) {
	if c.opts.Logf != nil {
		c.opts.Logf(format, args...)
	}
}

// Open connects to the remote cache at ref. It asks the registry's /v2/ endpoint which protocol it speaks
// (HTTPS, or plain HTTP where allowed) so that a wrong address, an untrusted certificate or a registry that
// is down is reported here, once, rather than by every lookup. Credentials are resolved when the registry
// asks for them.
func Open(ctx context.Context, ref Ref, opts Options) (*Cache, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	creds, err := newCredentials(ref.Host, opts)
	if err != nil {
		return nil, fmt.Errorf("remote cache %s: %w", ref, err)
	}
	transport, err := newTransport(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("remote cache %s: %w", ref, err)
	}
	var rt http.RoundTripper = transport
	if opts.wrapTransport != nil {
		rt = opts.wrapTransport(rt)
	}
	httpClient := &http.Client{Transport: retry.NewTransport(rt)}
	c := &Cache{ref: ref, opts: opts, creds: creds}

	plain, err := c.probe(ctx, httpClient)
	if err != nil {
		return nil, fmt.Errorf("remote cache %s: %w", ref, err)
	}
	client := &auth.Client{
		Client:     httpClient,
		Cache:      auth.NewCache(),
		Credential: creds.get,
	}
	client.SetUserAgent(userAgent(opts.Version))
	c.repo = &orasremote.Repository{
		Client:          client,
		Reference:       registry.Reference{Registry: ref.Host, Repository: ref.Repository},
		PlainHTTP:       plain,
		TagListMaxPages: 10000,
	}
	return c, nil
}

func userAgent(version string) string {
	if version == "" {
		version = "devel"
	}
	return "imgform/" + version
}

// newTransport returns an HTTP transport that trusts the system's CAs and those in caFile.
func newTransport(caFile string) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile == "" {
		return t, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}

// probe asks GET /v2/ over HTTPS, then over plain HTTP where that is allowed and the registry answered
// HTTPS with plain HTTP. It reports whether to use plain HTTP. Any HTTP status means the registry is there;
// authentication comes later.
func (c *Cache) probe(ctx context.Context, client *http.Client) (plain bool, err error) {
	get := func(scheme string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+c.ref.Host+"/v2/", nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", userAgent(c.opts.Version))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return resp.Body.Close()
	}
	err = get("https")
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, http.ErrSchemeMismatch) {
		return false, c.explain(err)
	}
	if !isLoopback(c.ref.Host) && !c.opts.Insecure {
		return false, fmt.Errorf("registry %s speaks plain HTTP, which imgform uses only for registries on this "+
			"machine (localhost, 127.0.0.1, ::1) or when told the registry is insecure", c.ref.Host)
	}
	if err := get("http"); err != nil {
		return false, c.explain(err)
	}
	c.logf("remote: %s: plain HTTP", c.ref.Host)
	return true, nil
}

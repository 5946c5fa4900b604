// Package registrytest runs a real OCI registry for tests: Docker Distribution, Debian's docker-registry
// package, on a loopback port, with TLS and htpasswd authentication when asked for.
package registrytest

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"gitlab.com/imgform/imgform/internal/fsutil"
)

// Binary is Docker Distribution, the registry most self-hosted setups and GitLab's own are built on. Tests
// fail without it rather than pass without testing.
const Binary = "/usr/bin/docker-registry"

// Options chooses a variant of the test registry.
type Options struct {
	// TLS serves HTTPS with a self-signed certificate for 127.0.0.1.
	TLS bool
	// Users enables htpasswd authentication with these users and passwords.
	Users map[string]string
}

// Registry is a registry process serving a storage folder on a loopback port.
type Registry struct {
	Host   string // 127.0.0.1:port
	Root   string // the storage folder
	CAFile string // the certificate, a CA of its own; "" without TLS
	config string

	mu  sync.Mutex
	cmd *exec.Cmd
	log *fsutil.TailBuffer
}

// Start starts a registry and stops it when the test ends.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Fatalf("the remote cache's tests need Docker Distribution (%s, Debian package docker-registry): "+
			"run scripts/install-deps.sh: %v", Binary, err)
	}
	dir := t.TempDir()
	r := &Registry{Root: filepath.Join(dir, "storage"), log: fsutil.NewTailBuffer(4 << 10)}
	r.Host = "127.0.0.1:" + freePort(t)

	var cfg strings.Builder
	fmt.Fprintf(&cfg, "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n")
	fmt.Fprintf(&cfg, "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n", r.Root)
	fmt.Fprintf(&cfg, "  maintenance:\n    uploadpurging:\n      enabled: false\n")
	fmt.Fprintf(&cfg, "http:\n  addr: %s\n  secret: imgform-test\n", r.Host)
	if opts.TLS {
		cert, key := selfSignedCert(t, dir)
		r.CAFile = cert
		fmt.Fprintf(&cfg, "  tls:\n    certificate: %s\n    key: %s\n", cert, key)
	}
	if opts.Users != nil {
		fmt.Fprintf(&cfg, "auth:\n  htpasswd:\n    realm: imgform-test\n    path: %s\n", writeHtpasswd(t, dir, opts.Users))
	}
	r.config = filepath.Join(dir, "config.yml")
	if err := os.WriteFile(r.config, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r.Restart(t)
	t.Cleanup(func() {
		r.Stop(t)
		if t.Failed() {
			t.Logf("registry log (end):\n%s", r.log)
		}
	})
	return r
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// Restart runs the registry again after Stop, on the same port and storage, and returns once it listens:
// it says so in its log, so nothing polls or sleeps.
func (r *Registry) Restart(t testing.TB) {
	t.Helper()
	cmd := exec.Command(Binary, "serve", r.config)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = r.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", Binary, err)
	}
	r.mu.Lock()
	r.cmd = cmd
	r.mu.Unlock()
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		said := false
		for sc.Scan() {
			fmt.Fprintln(r.log, sc.Text())
			if !said && strings.Contains(sc.Text(), "listening on") {
				said = true
				listening <- true
			}
		}
		if !said {
			listening <- false
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	if !<-listening {
		_ = cmd.Wait()
		t.Fatalf("registry exited before listening:\n%s", r.log)
	}
}

// Stop kills the registry, as a crash or a reboot of the registry's host would.
func (r *Registry) Stop(t testing.TB) {
	r.mu.Lock()
	cmd := r.cmd
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Errorf("kill registry: %v", err)
	}
	_ = cmd.Wait() // killed: its exit status says so
}

// BlobPath returns where the registry keeps the blob of digest ("sha256:<hex>").
func (r *Registry) BlobPath(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.Root, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}

// selfSignedCert writes a certificate for 127.0.0.1 that is its own CA, and its key.
func selfSignedCert(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "imgform test registry"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	err = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	if err == nil {
		err = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// writeHtpasswd writes an htpasswd file with bcrypt hashes, the only kind Distribution accepts.
func writeHtpasswd(t testing.TB, dir string, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	for user, pass := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", user, hash)
	}
	path := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

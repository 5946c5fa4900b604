package remote

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// explain turns the errors a user can act on into sentences that say what to do: refused credentials,
// missing ones, and certificates of an unknown CA. Other errors are returned as they are.
func (c *Cache) explain(err error) error {
	if err == nil {
		return nil
	}
	var resp *errcode.ErrorResponse
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &resp) && resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("registry %s refused %s; check the user name and password or token: %w: %w",
			c.ref.Host, c.creds.describe(), ErrUnauthorized, err)
	case errors.As(err, &resp) && resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("registry %s denied access to %s with %s; the account may lack the pull or push "+
			"permission: %w: %w", c.ref.Host, c.ref.Repository, c.creds.describe(), ErrUnauthorized, err)
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return fmt.Errorf("registry %s wants credentials and none were found (%s): set %s and %s, or run "+
			"docker login %s: %w", c.ref.Host, c.creds.describe(), EnvUser, EnvPassword, c.ref.Host, ErrUnauthorized)
	case errors.As(err, &unknownCA):
		return fmt.Errorf("registry %s: its TLS certificate is signed by an authority this machine does not "+
			"trust; if the registry uses a private CA, give the CA's PEM certificate with -remote-cache-ca or IMGFORM_REMOTE_CACHE_CA: %w",
			c.ref.Host, err)
	case errors.As(err, &hostname):
		return fmt.Errorf("registry %s: its TLS certificate is for another host name: %w", c.ref.Host, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("registry %s: its TLS certificate is not valid (expired, or not for a server): %w",
			c.ref.Host, err)
	}
	return err
}

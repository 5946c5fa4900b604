package remote

import "net/http"

// The tests run a real registry (internal/remote/registrytest). roundTripperFunc lets a test watch or
// disturb the requests the client sends it.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

package remote

import (
	"context"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"gitlab.com/imgform/imgform/internal/state"
)

// onRead calls fn before its first read.
type onRead struct {
	r    io.ReadCloser
	once sync.Once
	fn   func()
}

func (o *onRead) Read(p []byte) (int, error) {
	o.once.Do(o.fn)
	return o.r.Read(p)
}

func (o *onRead) Close() error { return o.r.Close() }

// TestRegistryStoppedMidPush kills the registry while the second blob of an object uploads. The push fails
// and leaves no entry; once the registry is back, the next push completes, reusing the blob that made it.
func TestRegistryStoppedMidPush(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t, registrytest.Options{})
	st := openStore(t)
	obj := commitFiles(t, st, testKey("disk"), state.Info{Kind: "disk"}, map[string][]byte{
		"a.raw": noise(100 << 10),
		"b.raw": []byte(strings.Repeat("b", 200<<10)),
	})

	var mu sync.Mutex
	uploads := 0
	c := openCache(t, reg, env{}, func(o *Options) {
		o.wrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
				if req.Method == http.MethodPut && strings.Contains(req.URL.Path, "/blobs/uploads/") {
					mu.Lock()
					uploads++
					if uploads == 2 {
						req.Body = &onRead{r: req.Body, fn: func() { reg.Stop(t) }}
					}
					mu.Unlock()
				}
				return rt.RoundTrip(req)
			})
		}
	})
	_, err := c.Push(ctx, st, obj, nil)
	if err == nil {
		t.Fatal("Push succeeded while the registry was stopped")
	}
	t.Log(err)

	reg.Restart(t)
	if _, ok, err := c.Stat(ctx, obj.Key); ok || err != nil {
		t.Fatalf("after the failed push Stat = %v, %v; want a miss", ok, err)
	}
	before := c.Counters()
	rep, err := c.Push(ctx, st, obj, nil)
	if err != nil || len(rep.Pushed) != 1 {
		t.Fatalf("Push after the restart = %+v, %v", rep, err)
	}
	if got := c.Counters(); got.BlobsSkipped == before.BlobsSkipped {
		t.Errorf("the blob uploaded before the stop was uploaded again: %+v", got)
	}
	got, err := c.Pull(ctx, openStore(t), obj.Key)
	if err != nil {
		t.Fatal(err)
	}
	sameFiles(t, got, obj)
}

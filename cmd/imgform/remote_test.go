package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/remote"
	"gitlab.com/imgform/imgform/internal/remote/registrytest"
	"gitlab.com/imgform/imgform/internal/state"
)

// The remote cache's flags reach a real registry: plan looks its keys up there, cache ls -remote lists it,
// and bad addresses or modes are clear errors. (Hits and pulls: internal/engine's remote tests and the
// end-to-end test.)
func TestRemoteCacheFlags(t *testing.T) {
	t.Setenv("IMGFORM_CACHE_DIR", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	reg := registrytest.Start(t, registrytest.Options{})
	dir := planConfig(t)
	addr := "oci://" + reg.Host + "/team/imgform-cache"

	code, stdout, stderr := imgform(t, "", "plan", "-remote-cache", addr, dir)
	if code != 0 || !strings.Contains(stdout, "Plan: 7 to run, 0 cached.") {
		t.Errorf("plan with an empty remote: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Setenv("IMGFORM_REMOTE_CACHE", addr)
	code, stdout, stderr = imgform(t, "", "cache", "ls", "-remote")
	if code != 0 || !strings.Contains(stdout, "0 result(s)") || !strings.Contains(stdout, reg.Host+"/team/imgform-cache") {
		t.Errorf("cache ls -remote: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "-remote-cache", "https://" + reg.Host + "/c", dir}, "oci://"},
		{[]string{"plan", "-remote-cache-mode", "write", dir}, "-remote-cache-mode"},
		{[]string{"plan", "-remote-cache", "oci://127.0.0.1:1/c", dir}, "remote cache oci://127.0.0.1:1/c"},
	} {
		code, stdout, stderr := imgform(t, "", tc.args...)
		if code != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, want 1 and an error with %q\n%s%s", tc.args, code, tc.want, stdout, stderr)
		}
	}
}

// A registry with TLS from a private CA and a password: without the CA the error says to give one; with a
// wrong password it says which credentials were refused, never the password; with both right, plan works.
func TestRemoteCacheCredentialsAndCA(t *testing.T) {
	t.Setenv("IMGFORM_CACHE_DIR", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	reg := registrytest.Start(t, registrytest.Options{TLS: true, Users: map[string]string{"ci": "right-password-1"}})
	dir := planConfig(t)
	addr := "oci://" + reg.Host + "/imgform-cache"
	t.Setenv("IMGFORM_REGISTRY_USER", "ci")

	t.Setenv("IMGFORM_REGISTRY_PASSWORD", "right-password-1")
	code, stdout, stderr := imgform(t, "", "plan", "-remote-cache", addr, dir)
	if code != 1 || !strings.Contains(stderr, "-remote-cache-ca") {
		t.Errorf("without the CA: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Setenv("IMGFORM_REGISTRY_PASSWORD", "wrong-password-2")
	code, stdout, stderr = imgform(t, "", "plan", "-remote-cache", addr, "-remote-cache-ca", reg.CAFile, dir)
	if code != 1 || !strings.Contains(stderr, "IMGFORM_REGISTRY_USER") || strings.Contains(stdout+stderr, "wrong-password-2") {
		t.Errorf("wrong password: exit %d\n%s%s", code, stdout, stderr)
	}
	t.Setenv("IMGFORM_REGISTRY_PASSWORD", "right-password-1")
	code, stdout, stderr = imgform(t, "", "plan", "-remote-cache", addr, "-remote-cache-ca", reg.CAFile, dir)
	if code != 0 || !strings.Contains(stdout, "Plan: 7 to run") {
		t.Errorf("right credentials and CA: exit %d\n%s%s", code, stdout, stderr)
	}
}

// cache ls -remote DIR lists only what the configuration in DIR uses, out of a repository that another
// configuration shares.
func TestCacheLsRemoteOfAConfiguration(t *testing.T) {
	cacheDir := t.TempDir()
	t.Setenv("IMGFORM_CACHE_DIR", cacheDir)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	reg := registrytest.Start(t, registrytest.Options{})
	dir := planConfig(t)
	addr := "oci://" + reg.Host + "/shared/imgform-cache"
	t.Setenv("IMGFORM_REMOTE_CACHE", addr)

	code, stdout, stderr := imgform(t, "", "plan", "-json", dir)
	if code != 0 {
		t.Fatalf("plan -json: exit %d\n%s", code, stderr)
	}
	var p struct {
		Images []struct {
			Steps []struct{ ID, Key string }
		}
	}
	if err := json.Unmarshal([]byte(stdout), &p); err != nil || len(p.Images) == 0 || len(p.Images[0].Steps) == 0 {
		t.Fatalf("plan -json: %v\n%s", err, stdout)
	}
	ours, err := state.ParseKey(p.Images[0].Steps[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	theirs := state.Key{0xde, 0xad}

	st, err := state.Open(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := remote.Parse(addr)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := remote.Open(context.Background(), ref, remote.Options{Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	for key, step := range map[state.Key]string{ours: p.Images[0].Steps[0].ID, theirs: "other/fetch"} {
		w, err := st.Begin(key, state.Info{Kind: "fetch", Image: strings.Split(step, "/")[0], Step: step})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteFile("disk", []byte("disk of "+step), 0o644); err != nil {
			t.Fatal(err)
		}
		obj, err := w.Commit()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rc.Push(context.Background(), st, obj, nil); err != nil {
			t.Fatal(err)
		}
	}

	code, stdout, stderr = imgform(t, "", "cache", "ls", "-remote")
	if code != 0 || !strings.Contains(stdout, "2 result(s)") {
		t.Errorf("cache ls -remote: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = imgform(t, "", "cache", "ls", "-remote", dir)
	if code != 0 || !strings.Contains(stdout, "1 of the 2 result(s)") || !strings.Contains(stdout, ours.Short()) ||
		strings.Contains(stdout, theirs.Short()) {
		t.Errorf("cache ls -remote DIR: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := imgform(t, "", "cache", "ls", dir); code != 1 || !strings.Contains(stderr, "-remote") {
		t.Errorf("cache ls DIR without -remote: exit %d, want 1 and an error that says a folder goes with -remote\n%s", code, stderr)
	}
}

package engine

import (
	"context"
	"strings"
	"testing"

	"gitlab.com/imgform/imgform/internal/config"
)

// secretConfig is baseConfig with a sensitive variable in the user-data and a provisioner's environment.
// The value holds characters that JSON escapes, so a redaction of the raw value alone would miss it in a
// canonical JSON encoding.
const secretValue = `p&ss<w>rd"\1`

func (te *testEnv) writeSecret() {
	te.t.Helper()
	te.writeBase()
	te.replace(`variable "greeting" {`, "variable \"password\" {\n  sensitive = true\n}\n\nvariable \"greeting\" {")
	te.replace(`cloud_config = { packages = ["curl"] }`, `cloud_config = { packages = ["curl"], chpasswd = { list = "root:${var.password}" } }`)
	te.replace(`inline = ["echo ${var.greeting}"]`, "inline = [\"echo ${var.greeting}\"]\n    environment = { PW = var.password }")
}

func keysWith(t *testing.T, te *testEnv, secret string) map[string]string {
	t.Helper()
	t.Setenv(KeySecretEnv, secret)
	return keysOf(te.plan(te.load(config.VarArg{Name: "password", Value: secretValue})))
}

// Issue 12.2: a step whose inputs hold a sensitive value gets a key that cannot be brute-forced offline:
// two stores (or two shared secrets) give different keys for it, and the same keys for every step without
// one; machines that share IMGFORM_KEY_SECRET share keys.
func TestSensitiveValuesEnterKeysKeyed(t *testing.T) {
	a, b := newTestEnv(t), newTestEnv(t)
	b.dir = a.dir // the same configuration, another store
	a.writeSecret()
	t.Setenv(KeySecretEnv, "")
	ka, kb := keysOf(a.plan(a.load(config.VarArg{Name: "password", Value: secretValue}))), keysOf(b.plan(b.load(config.VarArg{Name: "password", Value: secretValue})))
	sensitive := map[string]bool{"base/seed": true, "base/provision/one": true}
	for id, k := range ka {
		differs := k != kb[id]
		// Steps built on a sensitive one differ too: their keys hold its key.
		wantDiffer := sensitive[id] || (id != "base/fetch" && !strings.HasPrefix(id, "base/seed"))
		if differs != wantDiffer {
			t.Errorf("%s: keys of two stores differ %t, want %t", id, differs, wantDiffer)
		}
	}
	if ka["base/fetch"] != kb["base/fetch"] {
		t.Error("the fetch, which holds no secret, has different keys in two stores")
	}

	// One shared secret: the same keys in both stores; another secret: other keys for the sensitive steps.
	s1, s2 := keysWith(t, a, "0123456789abcdef-team-one"), keysWith(t, b, "0123456789abcdef-team-one")
	if s1["base/seed"] != s2["base/seed"] || s1["base/export/raw"] != s2["base/export/raw"] {
		t.Error("two stores with the same IMGFORM_KEY_SECRET give different keys")
	}
	if s3 := keysWith(t, b, "0123456789abcdef-team-two"); s3["base/seed"] == s1["base/seed"] || s3["base/fetch"] != s1["base/fetch"] {
		t.Error("another IMGFORM_KEY_SECRET gives the same key for the seed, or another for the fetch")
	}

	// Without a sensitive value, keys do not depend on the secret at all.
	c, d := newTestEnv(t), newTestEnv(t)
	d.dir = c.dir
	c.writeBase()
	t.Setenv(KeySecretEnv, "")
	kc, kd := keysOf(c.plan(c.load())), keysOf(d.plan(d.load()))
	for id, k := range kc {
		if kd[id] != k {
			t.Errorf("%s: a configuration without secrets has different keys in two stores", id)
		}
	}
	t.Setenv(KeySecretEnv, "short")
	if _, err := c.engine(nil).Plan(context.Background(), c.load()); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("a short IMGFORM_KEY_SECRET: %v", err)
	}
}

// Issue 12.5: IMGFORM_DEBUG_KEYS shows no sensitive value, not even JSON-escaped, and no plain digest of a
// part that holds one.
func TestDebugKeysHideSensitiveParts(t *testing.T) {
	te := newTestEnv(t)
	te.writeSecret()
	rec := newRecorder()
	e := te.engine(rec)
	e.DebugKeys = true
	p, err := e.Plan(context.Background(), te.load(config.VarArg{Name: "password", Value: secretValue}))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(rec.messages, "\n")
	for _, leak := range []string{secretValue, `p\u0026ss\u003cw\u003erd\"\\1`, "ss<w>rd", `ss\u003cw`} {
		if strings.Contains(joined, leak) {
			t.Errorf("the debug log shows %q", leak)
		}
	}
	for _, want := range []string{"key base/seed: user-data = (sensitive) [hmac:", "key base/provision/one: provisioner = (sensitive) [hmac:",
		"key base/provision/two: script scripts/two.sh = sha256:"} {
		if !strings.Contains(joined, want) {
			t.Errorf("debug log lacks %q", want)
		}
	}
	// The plan's JSON and the record hold the same keyed digests, never a plain one of the user-data.
	for _, sp := range p.Images[0].Steps {
		if strings.Contains(strings.Join(sp.Reasons, " "), secretValue) {
			t.Errorf("%s: a reason shows the secret", sp.ID)
		}
	}
}

// The steps whose keys hold a sensitive value are marked Sensitive, so that the guest session saves no VM
// state from them on (steps/vm): the provisioner with the password in its environment and the seed; the
// steps after them are not marked themselves (the session carries the taint), nor is the boot.
func TestSensitiveStepsAreMarked(t *testing.T) {
	te := newTestEnv(t)
	te.writeSecret()
	p, err := te.engine(nil).makePlan(context.Background(), te.load(config.VarArg{Name: "password", Value: secretValue}), nil)
	if err != nil {
		t.Fatal(err)
	}
	var marked []string
	for _, s := range p.graph.Steps {
		if s.Sensitive {
			marked = append(marked, s.Addr.ID())
		}
	}
	if got := strings.Join(marked, " "); got != "base/seed base/provision/one" {
		t.Errorf("sensitive steps: %s", got)
	}
}

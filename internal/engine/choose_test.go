package engine

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFamily adds to the base configuration a child image derived from base and an unrelated image.
func (te *testEnv) writeFamily() {
	te.t.Helper()
	te.writeBase()
	te.write("child.imgform.hcl", `
image "child" {
  source {
    image = image.base
  }
  provision "extra" {
    inline = ["echo child"]
  }
}

image "other" {
  source {
    path = "other.raw"
  }
  provision "x" {
    inline = ["echo other"]
  }
}
`)
	makeDisk(te.t, filepath.Join(te.dir, "other.raw"), 0x22)
}

func imagePlan(p *Plan, name string) *ImagePlan {
	for _, ip := range p.Images {
		if ip.Name == name {
			return ip
		}
	}
	return nil
}

// -only plans the chosen images and the ones they derive from (said so); the others are left out, run
// nothing and keep their record; -except is the reverse; a pattern that matches nothing is an error.
func TestOnlyAndExcept(t *testing.T) {
	te := newTestEnv(t)
	te.writeFamily()
	cfg := te.load()
	eng := te.engine(nil)
	eng.Only = []string{"chi*"}
	p, err := eng.Plan(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ip := imagePlan(p, "base"); ip.LeftOut || !strings.Contains(ip.Selection, `"child" derive(s) from it`) {
		t.Errorf("base: left out %v, selection %q", ip.LeftOut, ip.Selection)
	}
	if ip := imagePlan(p, "child"); ip.LeftOut || ip.Selection != "" {
		t.Errorf("child: left out %v, selection %q", ip.LeftOut, ip.Selection)
	}
	other := imagePlan(p, "other")
	if !other.LeftOut || other.Selection != "left out by -only" {
		t.Errorf("other: left out %v, selection %q", other.LeftOut, other.Selection)
	}
	for _, sp := range other.Steps {
		if sp.Action != ActionSkip || !strings.Contains(strings.Join(sp.Reasons, ";"), `image "other" is left out by -only`) {
			t.Errorf("%s: %s %q", sp.ID, sp.Action, sp.Reasons)
		}
	}
	rec := newRecorder()
	eng.Hooks = rec
	if _, err := eng.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	for id := range rec.finished {
		if strings.HasPrefix(id, "other/") {
			t.Errorf("-only=chi* ran %s", id)
		}
	}
	if rec.finished["child/provision/extra"] != StatusDone || rec.finished["base/export/raw"] != StatusDone {
		t.Errorf("statuses %v", rec.finished)
	}
	// Without a selection, only the image left out runs, and base and child are explained as cached.
	p = te.plan(cfg)
	for _, sp := range p.Images[0].Steps {
		if sp.Action != ActionCached {
			t.Errorf("%s: %s after -only", sp.ID, sp.Action)
		}
	}
	if got := p.Step("other/provision/x").Action; got != ActionRun {
		t.Errorf("other/provision/x: %s", got)
	}

	eng = te.engine(nil)
	eng.Except = []string{"base"}
	p, err = eng.Plan(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// child derives from base: -except base still plans base for it (it is cached here).
	if ip := imagePlan(p, "base"); ip.LeftOut || !strings.Contains(ip.Selection, "planned as well") {
		t.Errorf("-except=base: base left out %v, %q", ip.LeftOut, ip.Selection)
	}
	for _, c := range []struct{ only, except []string }{{[]string{"nope"}, nil}, {nil, []string{"b?se", "nope*"}}, {[]string{"["}, nil}, {[]string{"base"}, []string{"*"}}} {
		eng := te.engine(nil)
		eng.Only, eng.Except = c.only, c.except
		_, err := eng.Plan(context.Background(), cfg)
		if err == nil {
			t.Errorf("-only %v -except %v: no error", c.only, c.except)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "the images are base, child, other") && !strings.Contains(msg, "syntax error") && !strings.Contains(msg, "leave no image") {
			t.Errorf("-only %v -except %v: %v", c.only, c.except, err)
		}
	}
}

// -replace builds the step again under a new key, and everything after it; the old results stay in the
// store untouched (other layers may back onto them) and the next plan finds the new ones cached.
func TestReplace(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	cfg := te.load()
	mustApply(t, te, cfg)
	before := keysOf(te.plan(cfg))

	eng := te.engine(nil)
	eng.Replace = []string{"base.provision.two"}
	p, err := eng.Plan(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := "base/fetch=cached base/seed=cached base/boot=cached base/provision/one=cached base/provision/two=run base/provision/three=run base/cleanup=run base/export/raw=run base/test=run"
	if got := strings.Join(actions(p), " "); got != want {
		t.Fatalf("plan -replace:\n got %s\nwant %s", got, want)
	}
	if r := reasonsOf(p, "base/provision/two"); !strings.Contains(r, "-replace=base.provision.two") {
		t.Errorf("reasons %q", r)
	}
	if r := reasonsOf(p, "base/provision/three"); !strings.Contains(r, "which will run") {
		t.Errorf("reasons of the next step %q", r)
	}
	rec := newRecorder()
	eng.Hooks = rec
	if _, err := eng.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rec.ran(), " "); got != "base/cleanup base/export/raw base/provision/three base/provision/two base/test" {
		t.Errorf("ran %s", got)
	}
	after := keysOf(te.plan(cfg))
	if after["base/provision/two"] == before["base/provision/two"] || after["base/provision/one"] != before["base/provision/one"] {
		t.Errorf("keys before %v after %v", before, after)
	}
	if _, ok, err := te.store.Lookup(mustKey(t, before["base/provision/two"])); !ok || err != nil {
		t.Errorf("the replaced result is gone from the store: %v %v", ok, err)
	}
	if p := te.plan(cfg); p.ToRun != 0 {
		t.Errorf("after the replace: %v", actions(p))
	}

	eng.Replace = []string{"base.provision.tw"}
	if _, err := eng.Plan(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "base.provision.two") {
		t.Errorf("unknown address: %v", err)
	}
}

// refresh_every on the image builds its boot again once the cached one is older than that, with a plan
// that says so, and the rebuilt result counts as fresh until it ages in turn.
func TestRefreshEvery(t *testing.T) {
	te := newTestEnv(t)
	te.writeBase()
	te.write("main.imgform.hcl", strings.Replace(baseConfig, `image "base" {`, "image \"base\" {\n  refresh_every = \"7d\"", 1))
	cfg := te.load()
	now := time.Now()
	clock := func() time.Time { return now }
	te.store.Now = clock
	plan := func() *Plan {
		eng := te.engine(nil)
		eng.Now = clock
		p, err := eng.Plan(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	mustApply(t, te, cfg)
	now = now.Add(6 * 24 * time.Hour)
	if p := plan(); p.ToRun != 0 {
		t.Fatalf("6 days later: %v", actions(p))
	}
	now = now.Add(3 * 24 * time.Hour)
	p := plan()
	if got := p.Step("base/boot").Action; got != ActionRun || p.Step("base/seed").Action != ActionCached {
		t.Fatalf("9 days later: %v", actions(p))
	}
	if r := reasonsOf(p, "base/boot"); !strings.Contains(r, `built 9d ago, older than image "base"'s refresh_every = "7d"`) {
		t.Errorf("reasons %q", r)
	}
	eng := te.engine(nil)
	eng.Now = clock
	if _, err := eng.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if p := plan(); p.ToRun != 0 {
		t.Errorf("right after the refresh: %v", actions(p))
	}
	// Another folder without the record walks from the stale result to the refreshed one.
	sib := te.sibling()
	sib.writeBase()
	sib.write("main.imgform.hcl", strings.Replace(baseConfig, `image "base" {`, "image \"base\" {\n  refresh_every = \"7d\"", 1))
	seng := sib.engine(nil)
	seng.Now = clock
	sp, err := seng.Plan(context.Background(), sib.load())
	if err != nil {
		t.Fatal(err)
	}
	if sp.Step("base/boot").Action != ActionCached || sp.Step("base/boot").Key != p.Step("base/boot").Key {
		t.Errorf("sibling: %v", actions(sp))
	}
}

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab.com/imgform/imgform/internal/config"
	"gitlab.com/imgform/imgform/internal/engine"
)

// User-data that makes cloud-init report an error fails the boot step with cloud-init's own account of
// it, leaves no QEMU behind, and keeps what finished before (the fetched source and the seed).
func TestCloudInitErrorFailsTheBuild(t *testing.T) {
	e := setup(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.imgform.hcl"), []byte(`
variable "source_url" {}
variable "source_checksum" {}

image "broken" {
  source {
    url      = var.source_url
    checksum = var.source_checksum
  }
  userdata {
    cloud_config = { runcmd = ["echo cloud-init runcmd breaks here", "false"] }
  }
  output "raw" {
    format = "raw"
    path   = "dist/broken.raw"
  }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Load(dir, config.LoadOptions{Env: []string{}, Vars: []config.VarArg{
		{Name: "source_url", Value: e.img}, {Name: "source_checksum", Value: "file:" + e.img + ".SHA256SUMS"},
	}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	eng := e.engine()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	_, err := eng.Apply(ctx, cfg)
	if err == nil {
		t.Fatal("apply succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"boot", "status: error", "runcmd"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if e.rec.finished["broken/boot"] != engine.StatusFailed {
		t.Errorf("boot status %v", e.rec.finished)
	}
	noQEMULeft(t, e.store.Dir())
	p, err := eng.Plan(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Step("broken/fetch").Action != engine.ActionCached || p.Step("broken/seed").Action != engine.ActionCached {
		t.Errorf("fetch and seed not kept: %s", shortActions(p))
	}
	if _, err := os.Stat(filepath.Join(dir, "dist", "broken.raw")); !os.IsNotExist(err) {
		t.Errorf("an output exists: %v", err)
	}
}

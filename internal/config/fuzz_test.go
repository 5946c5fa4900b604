package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes as a configuration file: loading may fail with diagnostics, but it must never
// panic, and a configuration that loads must render its user-data and units without panicking either.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "invalid", "*", "main.imgform.hcl"))
	seeds = append(seeds, filepath.Join("..", "..", "examples", "debian-12-base", "debian-12-base.imgform.hcl"))
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(precedenceConfig))
	f.Fuzz(func(t *testing.T, src []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "main.imgform.hcl"), src, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, diags := Load(dir, LoadOptions{Env: []string{}})
		if diags.HasErrors() || cfg == nil {
			return
		}
		for _, img := range cfg.Images {
			_, _ = img.RenderUserData(testBuildUser)
			for _, n := range img.Networks {
				_, _ = n.Render()
			}
		}
	})
}

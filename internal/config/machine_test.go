package config

import "testing"

// host_loopback has three states: not set (nil: imgform decides, see qemu.ResolveNetwork), true and false.
func TestMachineHostLoopback(t *testing.T) {
	for _, tc := range []struct {
		attr string
		want string
	}{{"", "unset"}, {"host_loopback = true", "true"}, {"host_loopback = false", "false"}} {
		dir := t.TempDir()
		writeTestFile(t, dir, "main.imgform.hcl", `image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "sha256:abababababababababababababababababababababababababababababababab"
  }
  machine {
    `+tc.attr+`
  }
  output "qcow2" {
    path = "dist/base.qcow2"
  }
}
`)
		cfg, diags := Load(dir, LoadOptions{Env: []string{}})
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		got := "unset"
		if hl := cfg.Images[0].Machine.HostLoopback; hl != nil {
			got = map[bool]string{true: "true", false: "false"}[*hl]
		}
		if got != tc.want {
			t.Errorf("%q: host_loopback %s, want %s", tc.attr, got, tc.want)
		}
	}
}

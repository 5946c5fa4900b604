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

func TestValidPublishRef(t *testing.T) {
	for ref, want := range map[string]bool{
		"oci://registry.example.org/images/debian-12:2026.11":   true,
		"oci://127.0.0.1:5000/a:b":                              true,
		"oci://127.0.0.1:5000/a":                                false, // no tag: the port is not one
		"registry.example.org/images/debian-12:1":               false,
		"oci://registry.example.org/images/debian-12@sha256:ab": false,
		"oci://registry.example.org/a:":                         false,
		"oci:///a:b":                                            false,
	} {
		if got := validPublishRef(ref); got != want {
			t.Errorf("validPublishRef(%q) = %v, want %v", ref, got, want)
		}
	}
}

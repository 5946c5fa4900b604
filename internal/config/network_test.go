package config

import (
	"strings"
	"testing"
)

// Repeated sections (a list of objects), multi-valued keys (a list value), booleans as yes/no, and section
// names written in any case all come out as systemd expects them.
func TestNetworkUnitRendering(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "main.imgform.hcl", `
image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  network "10-static" {
    Route = [
      { Gateway = "192.0.2.1", Metric = 50 },
      { Destination = "198.51.100.0/24", Gateway = "192.0.2.254" },
    ]
    address = [{ Address = "192.0.2.10/24" }, { Address = "192.0.2.11/24" }]
    match   = { MACAddress = "52:54:00:12:34:56" }
    network = { DNS = ["192.0.2.53", "192.0.2.54"], Domains = "example.org", IPv6AcceptRA = false }
    ipv6_accept_ra = { UseDNS = true }
  }
  output "disk" {
    path = "dist/disk.qcow2"
  }
}
`)
	cfg, diags := Load(dir, LoadOptions{Env: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	got, err := cfg.Images[0].Networks[0].Render()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimLeft(`
[Match]
MACAddress=52:54:00:12:34:56

[Network]
DNS=192.0.2.53
DNS=192.0.2.54
Domains=example.org
IPv6AcceptRA=no

[Address]
Address=192.0.2.10/24

[Address]
Address=192.0.2.11/24

[Route]
Gateway=192.0.2.1
Metric=50

[Route]
Destination=198.51.100.0/24
Gateway=192.0.2.254

[IPv6AcceptRA]
UseDNS=yes
`, "\n")
	if string(got) != want {
		t.Errorf("unit:\n%s\nwant:\n%s", got, want)
	}
}

func TestNetworkValueErrors(t *testing.T) {
	cases := map[string]string{
		`network = { DNS = null }`:                  "remove the key instead",
		`network = { Description = "a\nb" }`:        "cannot span several lines",
		`network = "DHCP=yes"`:                      "must be an object",
		`network = { DHCP = { v4 = true } }`:        "must be a string, number or bool",
		`route = [{ Gateway = "x" }, "y"]`:          "each element must be an object",
		`dhcp = { UseDNS = true }`:                  "is not a section",
		`match = { Name = "en*" }` + "\nMatch = {}": "given twice",
	}
	for body, want := range cases {
		dir := t.TempDir()
		writeTestFile(t, dir, "main.imgform.hcl", `
image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  network "n" {
    `+body+`
  }
  output "disk" {
    path = "dist/disk.qcow2"
  }
}
`)
		_, diags := Load(dir, LoadOptions{Env: []string{}})
		if !diags.HasErrors() || !contains(diags.Error(), want) {
			t.Errorf("%s: want an error containing %q, got %v", body, want, diags)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

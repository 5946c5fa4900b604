package config

import (
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func loadUserdata(t *testing.T, userdata string, files map[string]string) *Image {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		writeTestFile(t, dir, name, content)
	}
	writeTestFile(t, dir, "main.imgform.hcl", `
image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  userdata {
    `+userdata+`
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
	return cfg.Images[0]
}

var testBuildUser = &BuildUser{Name: "imgform", AuthorizedKey: "ssh-ed25519 AAAAtest build"}

// The rendered document must be YAML that reads back to the same data, with strings that look like numbers
// kept as strings.
func TestCloudConfigRoundTrip(t *testing.T) {
	img := loadUserdata(t, `cloud_config = {
      write_files = [{ path = "/etc/x", content = "line 1\nline 2\n", permissions = "0600" }]
      timezone    = "Europe/Berlin"
      users       = [{ name = "alice", uid = 1500 }]
      ntp         = { enabled = true }
    }`, nil)
	out, err := img.RenderUserData(testBuildUser)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "#cloud-config\n") {
		t.Fatalf("no #cloud-config header:\n%s", out)
	}
	var doc struct {
		WriteFiles []map[string]string `yaml:"write_files"`
		Timezone   string
		Users      []any
		NTP        map[string]bool `yaml:"ntp"`
	}
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, out)
	}
	if doc.WriteFiles[0]["permissions"] != "0600" || doc.WriteFiles[0]["content"] != "line 1\nline 2\n" {
		t.Errorf("write_files = %v", doc.WriteFiles)
	}
	if doc.Timezone != "Europe/Berlin" || !doc.NTP["enabled"] {
		t.Errorf("doc = %+v", doc)
	}
	if len(doc.Users) != 2 {
		t.Fatalf("users = %v, want alice and the build user", doc.Users)
	}
	build := doc.Users[1].(map[string]any)
	if build["name"] != "imgform" || build["ssh_authorized_keys"].([]any)[0] != testBuildUser.AuthorizedKey {
		t.Errorf("build user = %v", build)
	}
	if alice := doc.Users[0].(map[string]any); alice["uid"] != 1500 {
		t.Errorf("alice = %v", alice)
	}
}

// Without a users list cloud-init makes its default user; adding the build user must not take it away.
func TestBuildUserKeepsDefaultUser(t *testing.T) {
	img := loadUserdata(t, `cloud_config = { packages = ["curl"] }`, nil)
	out, err := img.RenderUserData(testBuildUser)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Users []any }
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Users) != 2 || doc.Users[0] != "default" {
		t.Errorf("users = %v, want [default, build user]", doc.Users)
	}
}

func TestCloudConfigFromYAMLFile(t *testing.T) {
	img := loadUserdata(t, `cloud_config = file("cloud.yaml")`, map[string]string{
		"cloud.yaml": "#cloud-config\npackages: [curl, jq]\nruncmd:\n  - echo hi\n",
	})
	out, err := img.RenderUserData(nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Packages []string
		Runcmd   []string
	}
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	if strings.Join(doc.Packages, ",") != "curl,jq" || doc.Runcmd[0] != "echo hi" {
		t.Errorf("doc = %+v", doc)
	}
}

// A script given as raw user-data travels next to the generated cloud-config in a MIME archive.
func TestRawScriptBecomesMultipart(t *testing.T) {
	img := loadUserdata(t, `content = file("boot.sh")`, map[string]string{"boot.sh": "#!/bin/sh\necho hello\n"})
	out, err := img.RenderUserData(testBuildUser)
	if err != nil {
		t.Fatal(err)
	}
	header, body, ok := strings.Cut(string(out), "\n\n")
	if !ok {
		t.Fatalf("no MIME header:\n%s", out)
	}
	mt, params, err := mime.ParseMediaType(strings.TrimPrefix(strings.Split(header, "\n")[0], "Content-Type: "))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("media type %q, %v", mt, err)
	}
	r := multipart.NewReader(strings.NewReader(body), params["boundary"])
	var types, bodies []string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		types = append(types, strings.Split(p.Header.Get("Content-Type"), ";")[0])
		bodies = append(bodies, string(b))
	}
	if strings.Join(types, ",") != "text/cloud-config,text/x-shellscript" {
		t.Errorf("parts %v", types)
	}
	if len(bodies) == 2 && (bodies[1] != "#!/bin/sh\necho hello\n" || !strings.Contains(bodies[0], "ssh-ed25519 AAAAtest")) {
		t.Errorf("bodies %q", bodies)
	}
}

func TestRawCloudConfigMerges(t *testing.T) {
	img := loadUserdata(t, `cloud_config = { packages = ["curl"] }
    content      = "#cloud-config\nruncmd: [\"true\"]\n"`, nil)
	out, err := img.RenderUserData(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "packages:") || !strings.Contains(string(out), "runcmd:") {
		t.Errorf("not merged:\n%s", out)
	}
	img = loadUserdata(t, `cloud_config = { packages = ["curl"] }
    content      = "#cloud-config\npackages: [jq]\n"`, nil)
	if _, err := img.RenderUserData(nil); err == nil || !strings.Contains(err.Error(), `"packages" is set both`) {
		t.Errorf("want a conflict error, got %v", err)
	}
}

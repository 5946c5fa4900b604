package config

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

const precedenceConfig = `
variable "who" {
  type    = string
  default = "default"
}

variable "packages" {
  type    = list(string)
  default = []
}

image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  userdata {
    cloud_config = { who = var.who, packages = var.packages }
  }
  output "disk" {
    path = "dist/${var.who}.qcow2"
  }
}
`

// The order follows Packer: default < IMGFORM_VAR_ environment < *.auto.imgvars.hcl < -var/-var-file in
// command-line order, the last one winning.
func TestVariablePrecedence(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "main.imgform.hcl", precedenceConfig)
	writeTestFile(t, dir, "a.imgvars.hcl", `who = "file-a"`)
	writeTestFile(t, dir, "b.imgvars.hcl", `who = "file-b"`)
	env := []string{"IMGFORM_VAR_who=env", "IMGFORM_VAR_packages=[\"curl\", \"jq\"]", "UNRELATED=1"}
	fileA, fileB := filepath.Join(dir, "a.imgvars.hcl"), filepath.Join(dir, "b.imgvars.hcl")

	cases := map[string]struct {
		env      []string
		auto     bool
		args     []VarArg
		want     string
		wantFrom string
	}{
		"default only":             {want: "default", wantFrom: "default"},
		"environment over default": {env: env, want: "env", wantFrom: "environment variable IMGFORM_VAR_who"},
		"auto file over environment": {
			env: env, auto: true, want: "auto", wantFrom: "x.auto.imgvars.hcl",
		},
		"var-file over auto file": {
			env: env, auto: true, args: []VarArg{{File: fileA}}, want: "file-a", wantFrom: "a.imgvars.hcl",
		},
		"-var after -var-file wins": {
			env: env, args: []VarArg{{File: fileA}, {Name: "who", Value: "flag"}}, want: "flag", wantFrom: "-var who",
		},
		"-var-file after -var wins": {
			env: env, args: []VarArg{{Name: "who", Value: "flag"}, {File: fileB}}, want: "file-b", wantFrom: "b.imgvars.hcl",
		},
		"last of two -var wins": {
			args: []VarArg{{Name: "who", Value: "one"}, {Name: "who", Value: "two"}}, want: "two", wantFrom: "-var who",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			d := t.TempDir()
			writeTestFile(t, d, "main.imgform.hcl", precedenceConfig)
			if tc.auto {
				writeTestFile(t, d, "x.auto.imgvars.hcl", `who = "auto"`)
			}
			cfg, diags := Load(d, LoadOptions{Env: append([]string{}, tc.env...), Vars: tc.args})
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			v := cfg.Variables["who"]
			if got := v.Value.AsString(); got != tc.want || v.Origin != tc.wantFrom {
				t.Errorf("who = %q from %q, want %q from %q", got, v.Origin, tc.want, tc.wantFrom)
			}
			if got := cfg.Images[0].Outputs[0].Path; got != "dist/"+tc.want+".qcow2" {
				t.Errorf("output path %q does not use the winning value", got)
			}
		})
	}

	t.Run("environment value parsed for a list type", func(t *testing.T) {
		cfg, diags := Load(dir, LoadOptions{Env: env})
		if diags.HasErrors() {
			t.Fatal(diags.Error())
		}
		want := cty.ListVal([]cty.Value{cty.StringVal("curl"), cty.StringVal("jq")})
		if got := cfg.Variables["packages"].Value; !got.RawEquals(want) {
			t.Errorf("packages = %#v, want %#v", got, want)
		}
	})
	t.Run("undeclared -var is an error", func(t *testing.T) {
		_, diags := Load(dir, LoadOptions{Env: []string{}, Vars: []VarArg{{Name: "whom", Value: "x"}}})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), `Did you mean "who"?`) {
			t.Errorf("want an undeclared-variable error with a suggestion, got %v", diags)
		}
	})
	t.Run("undeclared name in a var file is a warning", func(t *testing.T) {
		writeTestFile(t, dir, "c.imgvars.hcl", `whoo = "x"`)
		_, diags := Load(dir, LoadOptions{Env: []string{}, Vars: []VarArg{{File: filepath.Join(dir, "c.imgvars.hcl")}}})
		if diags.HasErrors() || len(diags) != 1 || !strings.Contains(diags[0].Detail, `Did you mean "who"?`) {
			t.Errorf("want one warning with a suggestion, got %v", diags)
		}
	})
	t.Run("wrong type from -var", func(t *testing.T) {
		_, diags := Load(dir, LoadOptions{Env: []string{}, Vars: []VarArg{{Name: "packages", Value: `"curl"`}}})
		if !diags.HasErrors() || !strings.Contains(diags.Error(), `Invalid value for variable "packages"`) {
			t.Errorf("want a type error, got %v", diags)
		}
	})
}

func TestParseVarFlag(t *testing.T) {
	for in, want := range map[string]VarArg{
		"a=b":       {Name: "a", Value: "b"},
		"a=b=c":     {Name: "a", Value: "b=c"},
		"a=":        {Name: "a", Value: ""},
		" list =[]": {Name: "list", Value: "[]"},
	} {
		got, err := ParseVarFlag(in)
		if err != nil || got != want {
			t.Errorf("ParseVarFlag(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"novalue", "=x", ""} {
		if _, err := ParseVarFlag(in); err == nil {
			t.Errorf("ParseVarFlag(%q) accepted", in)
		}
	}
}

const secret = "hunter2-very-secret"

// A sensitive value must not appear in any diagnostic text, whichever way it got there: hcl's "with var.x
// as ..." lines, a validation message that interpolates it, a function error that repeats its argument.
func TestSensitiveValuesRedactedInDiagnostics(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "main.imgform.hcl", `
variable "password" {
  type      = string
  sensitive = true

  validation {
    condition     = strlen(var.password) < 8
    error_message = "The password ${var.password} is too long."
  }
}

image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  userdata {
    content = file(var.password)
  }
  machine {
    cpus = var.password
  }
  output "disk" {
    path = "dist/disk.qcow2"
  }
}
`)
	loader := NewLoader()
	cfg, diags := loader.Load(dir, LoadOptions{Env: []string{"IMGFORM_VAR_password=" + secret}})
	if !diags.HasErrors() {
		t.Fatal("want errors")
	}
	if len(diags) < 3 {
		t.Errorf("want the validation, file() and cpus errors, got:\n%s", formatAll(diags))
	}
	var out bytes.Buffer
	if err := loader.WriteDiagnostics(&out, diags, 100, false); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), secret) {
		t.Errorf("diagnostics leak the secret:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "main.imgform.hcl:7:21: Error: Invalid value for variable \"password\"") {
		t.Errorf("validation error missing or without position:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "hidden because it includes a sensitive value") {
		t.Errorf("validation message with a secret not hidden:\n%s", out.String())
	}
	if got := cfg.Redact("user-data: " + secret); got != "user-data: (sensitive value)" {
		t.Errorf("Redact = %q", got)
	}
}

// file() and templatefile() resolve paths against the configuration folder, not the working directory.
func TestFileFunctionsRelativeToConfigFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "project", "image")
	writeTestFile(t, dir, "files/motd", "welcome\n")
	writeTestFile(t, dir, "files/hosts.tftpl", "%{ for h in hosts ~}\n${h} ${upper(domain)}\n%{ endfor ~}\n")
	writeTestFile(t, dir, "main.imgform.hcl", `
image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  userdata {
    cloud_config = {
      motd   = file("files/motd")
      hosts  = templatefile("files/hosts.tftpl", { hosts = ["a", "b"], domain = "lan" })
      exists = fileexists("files/motd")
      sum    = sha256(file("files/motd"))
    }
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
	cc := cfg.Images[0].Userdata.CloudConfig.AsValueMap()
	want := map[string]cty.Value{
		"motd":   cty.StringVal("welcome\n"),
		"hosts":  cty.StringVal("a LAN\nb LAN\n"),
		"exists": cty.True,
	}
	for k, w := range want {
		if got := cc[k]; !got.RawEquals(w) {
			t.Errorf("%s = %#v, want %#v", k, got, w)
		}
	}
	if got := cc["sum"].AsString(); got != sha256Hex("welcome\n") {
		t.Errorf("sum = %s", got)
	}
}

// Each block knows the variables it reads, also through locals, so plan can name a changed variable.
func TestVarRefs(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "main.imgform.hcl", `
variable "a" { default = "x" }
variable "b" { default = "y" }
variable "c" { default = 1 }
locals {
  ab   = "${var.a}-${local.bee}"
  bee  = upper(var.b)
}
image "base" {
  source {
    url      = "https://example.org/disk.qcow2"
    checksum = "none"
  }
  userdata {
    cloud_config = { x = local.ab }
  }
  provision "p" {
    inline = ["echo ${var.c}"]
  }
  output "disk" {
    path = "dist/${var.a}.qcow2"
  }
}
`)
	cfg, diags := Load(dir, LoadOptions{Env: []string{}})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	img := cfg.Images[0]
	for what, got := range map[string][]string{
		"userdata": img.Userdata.VarRefs, "provision": img.Provisioners[0].VarRefs, "output": img.Outputs[0].VarRefs, "source": img.Source.VarRefs,
	} {
		want := map[string]string{"userdata": "a,b", "provision": "c", "output": "a", "source": ""}[what]
		if strings.Join(got, ",") != want {
			t.Errorf("%s refs = %v, want %s", what, got, want)
		}
	}
}

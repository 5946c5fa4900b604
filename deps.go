//go:build tools

// Package imgform pins the dependencies that the packages of this module use, so that helpers working on
// separate packages share one go.mod. The build tag keeps it out of every real build.
package imgform

import (
	_ "github.com/agext/levenshtein"
	_ "github.com/coreos/go-systemd/v22/unit"
	_ "github.com/diskfs/go-diskfs"
	_ "github.com/hashicorp/go-cty-funcs/cidr"
	_ "github.com/hashicorp/go-cty-funcs/filesystem"
	_ "github.com/hashicorp/go-getter/v2"
	_ "github.com/hashicorp/hcl/v2"
	_ "github.com/klauspost/compress/zstd"
	_ "github.com/pmezard/go-difflib/difflib"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/urfave/cli/v2"
	_ "github.com/zclconf/go-cty-yaml"
	_ "github.com/zclconf/go-cty/cty"
	_ "go.yaml.in/yaml/v3"
	_ "golang.org/x/crypto/ssh"
	_ "golang.org/x/sys/unix"
)

package config

import (
	"bytes"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// FormatSuffixes are the files `imgform fmt` rewrites when it walks a folder.
var FormatSuffixes = []string{FileSuffix, ".imgvars.hcl"}

// IsFormattable tells whether fmt picks up a file found while walking a folder.
func IsFormattable(name string) bool {
	for _, s := range FormatSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// Format returns the canonical layout of an HCL file, as hclwrite.Format (what terraform fmt and packer fmt
// use) gives it. The source is parsed first: hclwrite formats token by token and would happily rearrange a
// file with a syntax error, so such a file gets diagnostics and is left alone.
func Format(src []byte, filename string) ([]byte, hcl.Diagnostics) {
	if _, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos); diags.HasErrors() {
		return nil, diags
	}
	out := hclwrite.Format(src)
	// hclwrite keeps trailing blank lines; one final newline is the canonical end of a file.
	out = append(bytes.TrimRight(out, "\n"), '\n')
	if len(bytes.TrimSpace(out)) == 0 {
		return []byte{}, nil
	}
	return out, nil
}

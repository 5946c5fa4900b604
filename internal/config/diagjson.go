package config

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// ValidateFormatVersion is the format_version of `imgform validate -json`, the layout of `terraform
// validate -json`, so that editors and CI tools that read Terraform's output read imgform's.
const ValidateFormatVersion = "1.0"

// JSONDiagnostic is one diagnostic as `terraform validate -json` prints it.
type JSONDiagnostic struct {
	Severity string       `json:"severity"` // "error" or "warning"
	Summary  string       `json:"summary"`
	Detail   string       `json:"detail,omitempty"`
	Range    *JSONRange   `json:"range,omitempty"`
	Snippet  *JSONSnippet `json:"snippet,omitempty"`
}

// JSONRange is a source range: 1-based lines and columns (in characters), 0-based byte offsets.
type JSONRange struct {
	Filename string  `json:"filename"`
	Start    JSONPos `json:"start"`
	End      JSONPos `json:"end"`
}

// JSONPos is one end of a JSONRange.
type JSONPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

// JSONSnippet is the source around a diagnostic: the lines of its range, and where in them the range is.
type JSONSnippet struct {
	Code                 string `json:"code"`
	StartLine            int    `json:"start_line"`
	HighlightStartOffset int    `json:"highlight_start_offset"`
	HighlightEndOffset   int    `json:"highlight_end_offset"`
}

// JSONDiagnostics converts diagnostics for validate -json, with sensitive values redacted like
// WriteDiagnostics does.
func (l *Loader) JSONDiagnostics(diags hcl.Diagnostics) []JSONDiagnostic {
	out := make([]JSONDiagnostic, 0, len(diags))
	for _, d := range diags {
		jd := JSONDiagnostic{Severity: "error", Summary: redact(l.secrets, d.Summary), Detail: redact(l.secrets, d.Detail)}
		if d.Severity == hcl.DiagWarning {
			jd.Severity = "warning"
		}
		if r := d.Subject; r != nil {
			jd.Range = &JSONRange{Filename: r.Filename,
				Start: JSONPos{r.Start.Line, r.Start.Column, r.Start.Byte}, End: JSONPos{r.End.Line, r.End.Column, r.End.Byte}}
			jd.Snippet = l.snippet(*r)
		}
		out = append(out, jd)
	}
	return out
}

// snippet returns the whole lines of rng from the loaded file, or nil when the file is not loaded.
func (l *Loader) snippet(rng hcl.Range) *JSONSnippet {
	f := l.parser.Files()[rng.Filename]
	if f == nil || rng.Start.Byte > len(f.Bytes) || rng.End.Byte > len(f.Bytes) || rng.Start.Byte > rng.End.Byte {
		return nil
	}
	src := f.Bytes
	start := rng.Start.Byte
	for start > 0 && src[start-1] != '\n' {
		start--
	}
	end := rng.End.Byte
	for end < len(src) && src[end] != '\n' {
		end++
	}
	return &JSONSnippet{Code: redact(l.secrets, strings.TrimRight(string(src[start:end]), "\r")), StartLine: rng.Start.Line,
		HighlightStartOffset: rng.Start.Byte - start, HighlightEndOffset: rng.End.Byte - start}
}

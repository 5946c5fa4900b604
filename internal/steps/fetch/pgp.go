package fetch

import (
	"fmt"
	"path"
	"strings"
)

// PGP-signed sums files. imgform does not check PGP signatures: it has no key to check them against (a
// publisher's key would have to be pinned in the configuration), and a signature checked against whatever
// key the same mirror offers proves nothing. It does not pretend either:
//
//   - A clear-signed sums file (RFC 4880 section 7; Fedora's CHECKSUM files) is read as the unsigned file it
//     wraps, and the caller is told, through Request.Warn, that the signature was not checked: it counts as
//     much as an unsigned file from the same server. Refusing it instead would buy nothing, since a hostile
//     mirror can as well serve the same lines without the armour, and it would break configurations that
//     work with Packer, whose go-getter skips the armour without a word.
//   - Only the signed body counts, so that the lines imgform reads are the lines `gpg --verify` vouches for:
//     text before or after the signed message (a second message included) is refused, and so is PGP armour
//     in the middle of an unsigned file.
//   - A detached signature (Debian's SHA512SUMS.sign, Ubuntu's SHA256SUMS.gpg) given where the sums file
//     belongs is refused with an error that says what to give instead.
//
// To rely on a signature, check it outside imgform and pin the checksum it vouches for ("sha256:<hex>").

// PGP armour lines.
const (
	pgpSignedBegin = "-----BEGIN PGP SIGNED MESSAGE-----"
	pgpSigBegin    = "-----BEGIN PGP SIGNATURE-----"
	pgpSigEnd      = "-----END PGP SIGNATURE-----"
)

// SignatureFileError reports a detached PGP signature given where a sums file belongs.
type SignatureFileError struct {
	File string // the signature's URL or path
}

func (e *SignatureFileError) Error() string {
	sig := path.Base(strings.ReplaceAll(e.File, `\`, "/"))
	signed := sig
	for _, ext := range []string{".sign", ".gpg", ".asc", ".sig"} {
		signed = strings.TrimSuffix(signed, ext)
	}
	if signed == sig || signed == "" {
		signed = "SUMS"
	}
	return fmt.Sprintf("%s is a detached PGP signature, not a sums file: imgform does not check PGP signatures; check it outside imgform (gpg --verify %s %s) and give the sums file it signs (checksum = \"file:.../%s\") or the image's checksum from it (\"sha256:<hex>\")",
		e.File, sig, signed, signed)
}

// sumsLine is a line of a sums file that counts: its 1-based number, and its text without line end or
// dash-escape.
type sumsLine struct {
	no   int
	text string
}

// signedBody returns the lines of a sums file that count: all of them for an unsigned file, the signed body
// for a clear-signed one (signed is then true). Blank lines are kept: the caller skips them.
func signedBody(file string, data []byte) (lines []sumsLine, signed bool, err error) {
	if isBinarySignature(data) {
		return nil, false, &SignatureFileError{File: file}
	}
	const (
		start    = iota // nothing but blank lines yet
		plain           // an unsigned file
		header          // the armour headers of a signed message ("Hash: SHA256"), up to a blank line
		body            // the signed text
		sig             // the signature of a signed message
		detached        // a signature without a signed message
		after           // after the signature
	)
	state := start
	raw := strings.Split(string(data), "\n")
	syntax := func(no int, text, reason string) error {
		return &SyntaxError{File: file, Line: no, Text: strings.TrimSpace(text), Reason: reason}
	}
	for i, line := range raw {
		no := i + 1
		line = strings.TrimSuffix(line, "\r")
		trimmed := strings.TrimSpace(line)
		armour := strings.HasPrefix(trimmed, "-----BEGIN PGP") || strings.HasPrefix(trimmed, "-----END PGP")
		switch state {
		case start, plain:
			switch {
			case state == start && trimmed == pgpSignedBegin:
				state, signed = header, true
			case state == start && trimmed == pgpSigBegin:
				state = detached
			case armour:
				return nil, false, syntax(no, line, "PGP armour in a file that is not a clear-signed message (it must start with "+pgpSignedBegin+")")
			default:
				if trimmed != "" {
					state = plain
				}
				lines = append(lines, sumsLine{no, line})
			}
		case header:
			if trimmed == "" {
				state = body
			}
		case body:
			switch {
			case trimmed == pgpSigBegin:
				state = sig
			case strings.HasPrefix(line, "- "):
				lines = append(lines, sumsLine{no, line[2:]})
			case strings.HasPrefix(line, "-"):
				return nil, false, syntax(no, line, "a line of a clear-signed message that starts with \"-\" must be dash-escaped (\"- -\")")
			default:
				lines = append(lines, sumsLine{no, line})
			}
		case sig, detached:
			if trimmed == pgpSigEnd {
				if state == detached {
					return nil, false, &SignatureFileError{File: file}
				}
				state = after
			}
		case after:
			if trimmed != "" {
				return nil, false, syntax(no, line, "text after the PGP signature is not covered by it")
			}
		}
	}
	switch state {
	case header, body, sig, detached:
		return nil, false, syntax(len(raw), "", "PGP armour is not closed")
	}
	return lines, signed, nil
}

// isBinarySignature tells whether data starts with an OpenPGP signature packet (tag 2) in the old or the
// new packet format, as a binary detached signature does.
func isBinarySignature(data []byte) bool {
	if len(data) == 0 {
		return false
	}
	switch data[0] {
	case 0x88, 0x89, 0x8a, 0x8b, 0xc2:
		return true
	}
	return false
}

// signedWarning is what Request.Warn is told about a clear-signed sums file.
func signedWarning(file string, sum Checksum) string {
	return fmt.Sprintf("the sums file %s is PGP-signed, but imgform does not check PGP signatures: the signature was not checked, and the file counts as much as an unsigned one from that server; to rely on it, check it outside imgform (gpg --verify) and give checksum = %q",
		file, sum.String())
}

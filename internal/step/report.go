package step

import "gitlab.com/imgform/imgform/internal/config"

// TestJob is one test of an image's result: a new instance booted from Disk.
type TestJob struct {
	Image     *config.Image
	ConfigDir string
	// Disk is the final layer every output of the image was converted from. It must not be written to:
	// the test boots it through a throwaway overlay in WorkDir.
	Disk Disk
	// WorkDir is an empty folder for the overlay, the test seed and the VM's state, removed after Test.
	WorkDir string
	// BuildUser and BuildKey (OpenSSH PEM) are what the build logged in with: the instance must refuse them.
	BuildUser string
	BuildKey  []byte
	// BuildHostKeys (as in HostKeysFile) and BuildMachineID are the build's identity, which the instance must
	// not have; empty when the layer did not record them.
	BuildHostKeys  []byte
	BuildMachineID string
	// Output reports one line of what the test does, such as a check's result; Message a warning.
	Output  func(line string)
	Message func(text string)
	// Redact removes sensitive values from any text before it is shown or stored.
	Redact func(string) string
	// Shared holds what keying worked out, such as the digests of the test blocks' scripts.
	Shared *Shared
}

// Check statuses of a TestReport.
const (
	CheckPassed  = "passed"
	CheckFailed  = "failed"
	CheckSkipped = "skipped"
)

// CheckResult is the outcome of one check of a test: a built-in check ("network") or a test block
// ("test nginx"). Detail is the check's output on failure or why it was skipped, redacted and cut to its
// last lines. It goes into the manifest next to the image: it must never hold a secret.
type CheckResult struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"`
	Detail  string  `json:"detail,omitempty"`
	Seconds float64 `json:"seconds"`
}

// TestReport is every check of a test, in the order they ran.
type TestReport struct {
	Checks []CheckResult `json:"checks"`
}

// Failed returns the checks that failed.
func (r *TestReport) Failed() []CheckResult {
	if r == nil {
		return nil
	}
	var out []CheckResult
	for _, c := range r.Checks {
		if c.Status == CheckFailed {
			out = append(out, c)
		}
	}
	return out
}

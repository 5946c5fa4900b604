package seed

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// metaData is the NoCloud meta-data document. Field names are cloud-init's.
type metaData struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname,omitempty"`
}

// MetaData renders the NoCloud meta-data YAML for instanceID and, when not empty, hostname.
//
// cloud-init runs its per-instance modules (users, SSH host keys, packages) again whenever the instance ID
// changes, so the caller should derive it from what the boot is for (for example the step key), not from the
// clock. hostname must be a valid DNS host name: cloud-init would write it to /etc/hostname as given.
func MetaData(instanceID, hostname string) ([]byte, error) {
	if strings.TrimSpace(instanceID) == "" {
		return nil, errors.New("seed: meta-data: instance ID is empty")
	}
	if hostname != "" {
		if err := checkHostname(hostname); err != nil {
			return nil, fmt.Errorf("seed: meta-data: %w", err)
		}
	}
	b, err := yaml.Marshal(metaData{InstanceID: instanceID, LocalHostname: hostname})
	if err != nil {
		return nil, fmt.Errorf("seed: meta-data: %w", err)
	}
	return b, nil
}

// checkHostname accepts RFC 1123 host names: dot-separated labels of 1 to 63 letters, digits and hyphens,
// not starting or ending with a hyphen, 253 characters at most.
func checkHostname(h string) error {
	if len(h) > 253 {
		return fmt.Errorf("host name %q is longer than 253 characters", h)
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > 63 {
			return fmt.Errorf("host name %q: label %q must have 1 to 63 characters", h, label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host name %q: label %q starts or ends with a hyphen", h, label)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("host name %q: label %q has character %q", h, label, c)
			}
		}
	}
	return nil
}

var hostnameBad = regexp.MustCompile(`[^a-z0-9-]+`)

// HostnameFor turns an image name into a host name for its meta-data: lower case, runs of other characters
// as one dash, at most 63 characters, "imgform" when nothing is left.
func HostnameFor(name string) string {
	h := strings.Trim(hostnameBad.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(h) > 63 {
		h = h[:63]
	}
	if h == "" {
		h = "imgform"
	}
	return h
}

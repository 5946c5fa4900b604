package seed

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestMetaData(t *testing.T) {
	cases := map[string]struct {
		instanceID, hostname string
	}{
		"with hostname":          {"iid-debian-12-base-1a2b3c", "debian-12-base"},
		"without hostname":       {"iid-1", ""},
		"fqdn":                   {"iid-1", "build.example.org"},
		"id needing yaml quotes": {"yes: no # not a comment", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := MetaData(tc.instanceID, tc.hostname)
			if err != nil {
				t.Fatalf("MetaData: %v", err)
			}
			checkGolden(t, "metadata", name+".yaml", got)
			// Whatever the golden file says, the YAML must read back as the same values.
			var back map[string]string
			if err := yaml.Unmarshal(got, &back); err != nil {
				t.Fatalf("rendered meta-data is not YAML: %v", err)
			}
			if back["instance-id"] != tc.instanceID || back["local-hostname"] != tc.hostname {
				t.Errorf("read back %q, want instance-id %q and local-hostname %q", back, tc.instanceID, tc.hostname)
			}
		})
	}
}

func TestMetaDataErrors(t *testing.T) {
	cases := map[string]struct {
		instanceID, hostname, wantMsg string
	}{
		"empty instance id":      {"", "host", "instance ID is empty"},
		"blank instance id":      {"  ", "", "instance ID is empty"},
		"underscore in hostname": {"iid", "my_host", "has character"},
		"leading hyphen":         {"iid", "-host", "hyphen"},
		"empty label":            {"iid", "a..b", "1 to 63"},
		"label too long":         {"iid", strings.Repeat("a", 64), "1 to 63"},
		"name too long":          {"iid", strings.Repeat("a.", 127) + "ab", "longer than 253"},
		"newline in hostname":    {"iid", "host\nname", "has character"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := MetaData(tc.instanceID, tc.hostname)
			if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("MetaData(%q, %q) error = %v, want one mentioning %q", tc.instanceID, tc.hostname, err, tc.wantMsg)
			}
		})
	}
}

package seed

import (
	"slices"
	"testing"
)

func TestQEMUArgs(t *testing.T) {
	cases := map[string]struct {
		path string
		want []string
	}{
		"plain path": {
			path: "/var/cache/imgform/seed.iso",
			want: []string{
				"-drive", "file=/var/cache/imgform/seed.iso,if=none,id=cidata,format=raw,readonly=on",
				"-device", "virtio-blk-pci,drive=cidata",
			},
		},
		"comma in path": {
			path: "/tmp/a,b/seed.iso",
			want: []string{
				"-drive", "file=/tmp/a,,b/seed.iso,if=none,id=cidata,format=raw,readonly=on",
				"-device", "virtio-blk-pci,drive=cidata",
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := QEMUArgs(tc.path); !slices.Equal(got, tc.want) {
				t.Errorf("QEMUArgs(%q) =\n%q\nwant\n%q", tc.path, got, tc.want)
			}
		})
	}
}

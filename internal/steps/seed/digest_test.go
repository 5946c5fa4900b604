package seed

import "testing"

func TestDigest(t *testing.T) {
	base := Files{UserData: []byte("ab"), MetaData: []byte("c")}
	cases := map[string]struct {
		files Files
		same  bool
	}{
		"identical":                 {Files{UserData: []byte("ab"), MetaData: []byte("c")}, true},
		"empty optional is absent":  {Files{UserData: []byte("ab"), MetaData: []byte("c"), VendorData: []byte{}}, true},
		"bytes moved between files": {Files{UserData: []byte("a"), MetaData: []byte("bc")}, false},
		"user-data changed":         {Files{UserData: []byte("ax"), MetaData: []byte("c")}, false},
		"network-config added":      {Files{UserData: []byte("ab"), MetaData: []byte("c"), NetworkConfig: []byte("x")}, false},
		"vendor-data added":         {Files{UserData: []byte("ab"), MetaData: []byte("c"), VendorData: []byte("x")}, false},
	}
	// Network-config and vendor-data holding the same bytes must differ too.
	if (Files{NetworkConfig: []byte("x")}).Digest() == (Files{VendorData: []byte("x")}).Digest() {
		t.Error("network-config and vendor-data with the same content have the same digest")
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := tc.files.Digest() == base.Digest(); got != tc.same {
				t.Errorf("same digest = %v, want %v", got, tc.same)
			}
		})
	}
}

package imageapi

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	ok := []Image{
		{Name: "debian-12", Source: SourceURL, URL: "https://mirror.example/debian-12.raw.zst", SHA256: sum, Format: FormatRawZst, OSFamily: "debian"},
		{Name: "rocky_9.4", Source: SourceUpload, SHA256: sum, Format: FormatQCOW2, OSFamily: "rhel", Size: 1 << 30},
	}
	for _, img := range ok {
		if err := Validate(img); err != nil {
			t.Errorf("%s: %v", img.Name, err)
		}
	}
	for want, img := range map[string]Image{
		"must be an http(s) URL": {Source: SourceURL, URL: "ftp://x/y", SHA256: sum, Format: FormatRaw, OSFamily: "debian"},
		"not both":               {Source: SourceUpload, URL: "https://x/y", SHA256: sum, Format: FormatRaw, OSFamily: "debian"},
		"64 hex digits":          {Source: SourceUpload, SHA256: strings.ToUpper(sum), Format: FormatRaw, OSFamily: "debian"},
		"format must be one of":  {Source: SourceUpload, SHA256: sum, Format: "vmdk", OSFamily: "debian"},
		"osFamily":               {Source: SourceUpload, SHA256: sum, Format: FormatRaw},
		"cannot be negative":     {Source: SourceUpload, SHA256: sum, Format: FormatRaw, OSFamily: "debian", Size: -1},
		"source must be":         {SHA256: sum, Format: FormatRaw, OSFamily: "debian"},
	} {
		if err := Validate(img); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error containing %q, got %v", want, err)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, n := range []string{"debian-12", "ubuntu-24.04-server-amd64", "a", strings.Repeat("x", MaxNameLength)} {
		if err := ValidateName(n); err != nil {
			t.Errorf("%q: %v", n, err)
		}
	}
	// Each would be more than one path segment, or none, in /boot/images/<name>.
	for _, n := range []string{"", "..", ".hidden", "a/b", "a b", "x%2F", strings.Repeat("x", MaxNameLength+1)} {
		if ValidateName(n) == nil {
			t.Errorf("%q accepted", n)
		}
	}
}

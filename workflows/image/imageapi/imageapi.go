// Package imageapi is the contract of OS images: what the catalog records
// of one, the rules its name and fields follow, and where a machine
// fetches its bytes. The API, the inventory's callers, hardware profiles,
// the install step and the deploy agent share it, so an image valid to one
// is valid to all. Standard library only.
package imageapi

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Image formats the deploy agent writes to a disk: a raw disk image as is
// or compressed, or qcow2 converted on the way.
const (
	FormatRaw    = "raw"
	FormatRawGz  = "raw.gz"
	FormatRawZst = "raw.zst"
	FormatQCOW2  = "qcow2"
)

// Formats lists the formats the catalog takes.
func Formats() []string {
	return []string{FormatRaw, FormatRawGz, FormatRawZst, FormatQCOW2}
}

// Where an image's bytes come from.
const (
	// SourceURL: metalflow proxies an origin the operator named.
	SourceURL = "url"
	// SourceUpload: metalflow keeps the bytes in its data directory.
	SourceUpload = "upload"
)

// MaxNameLength bounds image names, which appear in URL paths and profile
// files; distribution image names ("ubuntu-24.04-server-amd64") fit.
const MaxNameLength = 64

// BootPathPrefix is where the boot service serves image bytes.
const BootPathPrefix = "/boot/images/"

// BootPath is the path a machine fetches an image's bytes from, relative
// to the boot service's public URL.
func BootPath(name string) string {
	return BootPathPrefix + name
}

// Image is one catalog entry.
type Image struct {
	Name string `json:"name"`
	// Source is SourceURL or SourceUpload.
	Source string `json:"source"`
	// URL is the origin of a SourceURL image; empty for uploads.
	URL string `json:"url,omitempty"`
	// SHA256 is the hex digest of the bytes as stored (compressed, for
	// raw.gz and raw.zst): checked at upload, and by the deploy agent as
	// it streams a URL image.
	SHA256   string `json:"sha256"`
	Format   string `json:"format"`
	OSFamily string `json:"osFamily"`
	// Size is the length of the bytes in bytes; 0 when a URL image's
	// size was not given.
	Size      int64     `json:"size,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// ValidateName says why name cannot name an image, or nil. The rule is
// stepapi's: it keeps a name one safe URL path segment.
func ValidateName(name string) error {
	if !stepapi.IsName(name, MaxNameLength) {
		return fmt.Errorf("image name %q must be 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit", name, MaxNameLength)
	}
	return nil
}

// Validate says what is wrong with an image's fields apart from its name,
// all at once; an upload's URL must be empty, a URL image's an http(s) URL.
func Validate(img Image) error {
	var problems []string
	switch img.Source {
	case SourceURL:
		u, err := url.Parse(img.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Sprintf("url %q must be an http(s) URL", img.URL))
		}
	case SourceUpload:
		if img.URL != "" {
			problems = append(problems, "give a url or upload the bytes, not both")
		}
	default:
		problems = append(problems, fmt.Sprintf("source must be %s or %s, got %q", SourceURL, SourceUpload, img.Source))
	}
	if !isSHA256(img.SHA256) {
		problems = append(problems, fmt.Sprintf("sha256 must be 64 hex digits, got %q", img.SHA256))
	}
	if !isFormat(img.Format) {
		problems = append(problems, fmt.Sprintf("format must be one of %s, got %q", strings.Join(Formats(), ", "), img.Format))
	}
	if !stepapi.IsName(img.OSFamily, stepapi.MaxNameLength) {
		problems = append(problems, fmt.Sprintf("osFamily %q must be 1 to %d letters, digits, '.', '_' or '-' (e.g. debian, ubuntu, rhel)", img.OSFamily, stepapi.MaxNameLength))
	}
	if img.Size < 0 {
		problems = append(problems, "size cannot be negative")
	}
	if len(problems) > 0 {
		return fmt.Errorf("image %s: %s", img.Name, strings.Join(problems, "; "))
	}
	return nil
}

func isFormat(f string) bool {
	for _, k := range Formats() {
		if f == k {
			return true
		}
	}
	return false
}

// isSHA256 accepts lower-case hex only, so one digest has one spelling and
// compares equal to what sha256 prints.
func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return true
}

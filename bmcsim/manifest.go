package bmcsim

import (
	"encoding/json"
	"io"
)

// ManifestEntry describes one BMC to whatever will manage it: the
// machine-readable equivalent of the sheet that arrives with a rack.
type ManifestEntry struct {
	ID       string   `json:"id"`
	Vendor   string   `json:"vendor"`
	Address  string   `json:"address"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	Serial   string   `json:"serial"`
	MACs     []string `json:"macs"`
}

// Manifest lists every BMC with its credentials and host identity.
func (f *Fleet) Manifest() []ManifestEntry {
	out := make([]ManifestEntry, 0, len(f.bmcs))
	for _, b := range f.bmcs {
		out = append(out, b.ManifestEntry())
	}
	return out
}

// ManifestEntry describes this BMC.
func (b *BMC) ManifestEntry() ManifestEntry {
	return ManifestEntry{ID: b.id, Vendor: b.vendor, Address: b.Address(), Username: b.username,
		Password: b.password, Serial: b.serial, MACs: b.MACs()}
}

// WriteManifest writes the manifest as an indented JSON array.
func (f *Fleet) WriteManifest(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(f.Manifest())
}

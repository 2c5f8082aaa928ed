package profiles

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// DefaultName is the profile used when none names or matches a server.
const DefaultName = "default"

// Catalog is the set of known profiles.
type Catalog struct {
	profiles map[string]Profile
}

// ErrUnknownProfile means a server named a profile nobody defined.
var ErrUnknownProfile = errors.New("unknown hardware profile")

// Default is the built-in profile: one RAID-1 root volume over two drives,
// a few BIOS settings every flavour of server should have for
// virtualisation workloads, and modest minimums.
func Default() Profile {
	p := Profile{
		Name:          DefaultName,
		Role:          RoleCompute,
		ResourceClass: "baremetal",
		Minimum:       Requirements{CPUs: 1, MemoryGiB: 1, Drives: 2, NICs: 1},
		BIOS: map[string]map[string]string{
			"dell":       {"SriovGlobalEnable": "Enabled", "ProcCStates": "Disabled", "SysProfile": "PerfOptimized"},
			"hpe":        {"WorkloadProfile": "Virtualization-MaxPerformance", "PowerRegulator": "StaticHighPerf"},
			"supermicro": {"QuietBoot": "Disable", "WatchDogFunction": "Enable"},
			"metalflow":  {"SRIOV": "Enabled", "PowerProfile": "Performance"},
		},
		RAID: TargetRAIDConfig{LogicalDisks: []LogicalDisk{{SizeGB: "MAX", RAIDLevel: "1", IsRootVolume: true}}},
	}
	return p
}

// NewCatalog holds the default profile and the given ones; a given profile
// named "default" replaces the built-in.
func NewCatalog(extra ...Profile) (*Catalog, error) {
	c := &Catalog{profiles: map[string]Profile{DefaultName: Default()}}
	for _, p := range extra {
		if err := p.Validate(); err != nil {
			return nil, err
		}
		c.profiles[p.Name] = p
	}
	return c, nil
}

// LoadDir reads every *.yaml / *.yml file of dir as one profile.
func LoadDir(dir string) (*Catalog, error) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	var ps []Profile
	seen := map[string]string{}
	for _, f := range files {
		p, err := ParseFile(f)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[p.Name]; dup {
			return nil, fmt.Errorf("profile %q is defined in both %s and %s", p.Name, other, f)
		}
		seen[p.Name] = f
		ps = append(ps, p)
	}
	return NewCatalog(ps...)
}

// ParseFile reads one profile, refusing unknown keys (a typo must not
// silently drop a BIOS setting).
func ParseFile(path string) (Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Profile{}, err
	}
	p, err := Parse(b)
	if err != nil {
		return Profile{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Parse reads one profile from YAML.
func Parse(b []byte) (Profile, error) {
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return Profile{}, fmt.Errorf("invalid profile YAML: %w", err)
	}
	if p.Role == "" {
		p.Role = RoleCompute
	}
	if err := p.Validate(); err != nil {
		return Profile{}, err
	}
	return p, nil
}

// Select picks the profile for a server: the one it names, else the first
// (by name) whose match fits the inspected vendor and model, else default.
func (c *Catalog) Select(name, vendor, model string) (Profile, error) {
	if name != "" {
		p, ok := c.profiles[name]
		if !ok {
			return Profile{}, fmt.Errorf("%w %q (known: %s)", ErrUnknownProfile, name, strings.Join(c.Names(), ", "))
		}
		return p, nil
	}
	for _, n := range c.Names() {
		if p := c.profiles[n]; p.Matches(vendor, model) {
			return p, nil
		}
	}
	return c.profiles[DefaultName], nil
}

// Has says whether a profile exists.
func (c *Catalog) Has(name string) bool {
	_, ok := c.profiles[name]
	return ok
}

// Names lists the profiles, sorted.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.profiles))
	for n := range c.profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NamingImage lists the profiles, sorted, whose default image is image;
// none for "", which names no image.
func (c *Catalog) NamingImage(image string) []string {
	var out []string
	if image == "" {
		return nil
	}
	for _, n := range c.Names() {
		if c.profiles[n].Image == image {
			out = append(out, n)
		}
	}
	return out
}

// Package profiles holds hardware profiles: what a model of server must
// have (inspection), and how it must be set up (BIOS, RAID, install) before
// it goes into service. Profiles are YAML files in a directory, one per
// vendor/model or role; a built-in default covers servers that name none.
package profiles

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/metalflow/metalflow/workflows/image/imageapi"
)

// Profile is one hardware profile.
type Profile struct {
	Name string `yaml:"name" json:"name"`
	// Match selects the profile for servers that name none: every field
	// given must be a case-insensitive substring of the inspected value.
	Match struct {
		Vendor string `yaml:"vendor" json:"vendor,omitempty"`
		Model  string `yaml:"model" json:"model,omitempty"`
	} `yaml:"match" json:"match"`
	// Role is compute, hypervisor or storage; hypervisors join a Nova aggregate.
	Role          string       `yaml:"role" json:"role"`
	ResourceClass string       `yaml:"resourceClass" json:"resourceClass"`
	Minimum       Requirements `yaml:"minimum" json:"minimum"`
	// BIOS maps a vendor key ("dell", "hpe", "supermicro", or "*" for
	// any) to the attributes servers of that vendor must have: attribute
	// names differ between vendors.
	BIOS    map[string]map[string]string `yaml:"bios" json:"bios,omitempty"`
	RAID    TargetRAIDConfig             `yaml:"raid" json:"raid"`
	Install InstallPolicy                `yaml:"install" json:"install"`
	// Image names the catalog image servers of this profile get unless
	// their registration names another; "" leaves it to the registration.
	// The catalog lives in the inventory, so only the name's form is
	// checked here; the API refuses to delete an image a profile names.
	Image string `yaml:"image" json:"image,omitempty"`
	// RootDevice are Ironic-style root-device hints choosing the disk the
	// deploy agent writes the image to (none: the smallest that fits).
	RootDevice map[string]string `yaml:"root_device" json:"rootDevice,omitempty"`
	// SSHAuthorizedKeys and UserData (#cloud-config) go to the installed
	// OS's cloud-init, with what the server's registration adds.
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys" json:"sshAuthorizedKeys,omitempty"`
	UserData          string   `yaml:"user_data" json:"userData,omitempty"`
}

// Requirements are what inspection checks.
type Requirements struct {
	CPUs      int `yaml:"cpus" json:"cpus,omitempty"`
	MemoryGiB int `yaml:"memoryGiB" json:"memoryGiB,omitempty"`
	Drives    int `yaml:"drives" json:"drives,omitempty"`
	NICs      int `yaml:"nics" json:"nics,omitempty"`
}

// TargetRAIDConfig follows Ironic's target_raid_config.
type TargetRAIDConfig struct {
	LogicalDisks []LogicalDisk `yaml:"logical_disks" json:"logical_disks"`
}

// LogicalDisk is one wanted RAID volume.
type LogicalDisk struct {
	// SizeGB is a number of GB or "MAX" for all the drives offer.
	SizeGB        string   `yaml:"size_gb" json:"size_gb"`
	RAIDLevel     string   `yaml:"raid_level" json:"raid_level"`
	IsRootVolume  bool     `yaml:"is_root_volume" json:"is_root_volume,omitempty"`
	PhysicalDisks []string `yaml:"physical_disks" json:"physical_disks,omitempty"`
}

// InstallPolicy bounds the OS install.
type InstallPolicy struct {
	// Timeout is how long to wait for the installer to phone home.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// Attempts is how many installs to try before asking a human.
	Attempts int `yaml:"attempts" json:"attempts"`
}

// Roles.
const (
	RoleCompute    = "compute"
	RoleHypervisor = "hypervisor"
	RoleStorage    = "storage"
)

// DrivesFor is how many drives a RAID level needs at least.
func DrivesFor(level string) (int, error) {
	switch strings.TrimPrefix(strings.ToUpper(level), "RAID") {
	case "0":
		return 1, nil
	case "1":
		return 2, nil
	case "5":
		return 3, nil
	case "6":
		return 4, nil
	case "10", "1+0":
		return 4, nil
	}
	return 0, fmt.Errorf("unsupported RAID level %q (0, 1, 5, 6, 10)", level)
}

// RedfishRAIDType is the level as Redfish's RAIDType names it.
func RedfishRAIDType(level string) string {
	l := strings.TrimPrefix(strings.ToUpper(level), "RAID")
	if l == "1+0" {
		l = "10"
	}
	return "RAID" + l
}

// SizeBytes is the wanted size, 0 meaning MAX.
func (d LogicalDisk) SizeBytes() (int64, error) {
	if strings.EqualFold(d.SizeGB, "MAX") || d.SizeGB == "" {
		return 0, nil
	}
	gb, err := strconv.ParseInt(d.SizeGB, 10, 64)
	if err != nil || gb <= 0 {
		return 0, fmt.Errorf("size_gb must be a positive number or MAX, got %q", d.SizeGB)
	}
	// Larger sizes would wrap around in bytes and ask the BMC for a
	// nonsense volume.
	if gb > math.MaxInt64/1_000_000_000 {
		return 0, fmt.Errorf("size_gb %q is larger than any volume", d.SizeGB)
	}
	return gb * 1_000_000_000, nil
}

// Validate says what is wrong with a profile, all at once.
func (p Profile) Validate() error {
	var problems []string
	if p.Name == "" {
		problems = append(problems, "name is required")
	}
	switch p.Role {
	case RoleCompute, RoleHypervisor, RoleStorage:
	default:
		problems = append(problems, fmt.Sprintf("role must be compute, hypervisor or storage, got %q", p.Role))
	}
	if p.Minimum.CPUs < 0 || p.Minimum.MemoryGiB < 0 || p.Minimum.Drives < 0 || p.Minimum.NICs < 0 {
		problems = append(problems, "minimum values cannot be negative")
	}
	roots := 0
	for i, d := range p.RAID.LogicalDisks {
		n, err := DrivesFor(d.RAIDLevel)
		if err != nil {
			problems = append(problems, fmt.Sprintf("raid.logical_disks[%d]: %v", i, err))
		}
		if _, err := d.SizeBytes(); err != nil {
			problems = append(problems, fmt.Sprintf("raid.logical_disks[%d]: %v", i, err))
		}
		if len(d.PhysicalDisks) > 0 && len(d.PhysicalDisks) < n {
			problems = append(problems, fmt.Sprintf("raid.logical_disks[%d]: RAID %s needs %d drives, %d named", i, d.RAIDLevel, n, len(d.PhysicalDisks)))
		}
		if d.IsRootVolume {
			roots++
		}
	}
	if roots > 1 {
		problems = append(problems, "at most one logical disk can be the root volume")
	}
	for vendor, attrs := range p.BIOS {
		for k, v := range attrs {
			if k == "" || v == "" {
				problems = append(problems, fmt.Sprintf("bios.%s: empty attribute name or value", vendor))
			}
		}
	}
	if p.Image != "" {
		if err := imageapi.ValidateName(p.Image); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if _, err := RootDeviceHints(p.RootDevice); err != nil {
		problems = append(problems, err.Error())
	}
	if err := ValidateSSHAuthorizedKeys(p.SSHAuthorizedKeys); err != nil {
		problems = append(problems, "ssh_authorized_keys"+err.Error())
	}
	if err := ValidateUserData(p.UserData); err != nil {
		problems = append(problems, "user_data: "+err.Error())
	}
	if p.Install.Timeout < 0 || p.Install.Attempts < 0 {
		problems = append(problems, "install timeout and attempts cannot be negative")
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("profile %q: %s", p.Name, strings.Join(problems, "; "))
	}
	return nil
}

// DesiredBIOS is what a server of this vendor must have: the vendor's own
// attributes over the "*" ones.
func (p Profile) DesiredBIOS(vendor string) map[string]string {
	out := map[string]string{}
	for k, v := range p.BIOS["*"] {
		out[k] = v
	}
	for key, attrs := range p.BIOS {
		if key == "*" || !strings.Contains(strings.ToLower(vendor), strings.ToLower(key)) {
			continue
		}
		for k, v := range attrs {
			out[k] = v
		}
	}
	return out
}

// InstallTimeout is the install wait with its default.
func (p Profile) InstallTimeout() time.Duration {
	if p.Install.Timeout <= 0 {
		return 45 * time.Minute
	}
	return p.Install.Timeout
}

// InstallAttempts is the number of installs with its default.
func (p Profile) InstallAttempts() int {
	if p.Install.Attempts <= 0 {
		return 3
	}
	return p.Install.Attempts
}

// Matches says whether the profile fits an inspected server.
func (p Profile) Matches(vendor, model string) bool {
	if p.Match.Vendor == "" && p.Match.Model == "" {
		return false
	}
	ok := func(want, got string) bool {
		return want == "" || strings.Contains(strings.ToLower(got), strings.ToLower(want))
	}
	return ok(p.Match.Vendor, vendor) && ok(p.Match.Model, model)
}

package profiles

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultProfileIsValidAndMakesOneRootMirror(t *testing.T) {
	p := Default()
	require.NoError(t, p.Validate())
	require.Len(t, p.RAID.LogicalDisks, 1)
	d := p.RAID.LogicalDisks[0]
	require.True(t, d.IsRootVolume)
	require.Equal(t, "RAID1", RedfishRAIDType(d.RAIDLevel))
	n, err := DrivesFor(d.RAIDLevel)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	// Every simulated vendor gets some BIOS settings.
	for _, vendor := range []string{"Dell Inc.", "HPE", "Supermicro", "Metalflow"} {
		require.NotEmpty(t, p.DesiredBIOS(vendor), vendor)
	}
	require.Empty(t, p.DesiredBIOS("Lenovo"))
}

func TestParseAndSelect(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	write("r650.yaml", `
name: dell-r650-hv
match: {vendor: dell, model: R650}
role: hypervisor
resourceClass: baremetal-hv
minimum: {cpus: 2, memoryGiB: 256, drives: 4}
bios:
  "*": {BootMode: Uefi}
  dell: {ProcVirtualization: Enabled, BootMode: Uefi}
raid:
  logical_disks:
    - {size_gb: "200", raid_level: "1", is_root_volume: true, physical_disks: [a, b]}
    - {size_gb: MAX, raid_level: "5"}
install: {timeout: 20m, attempts: 2}
image: ubuntu-24.04
`)
	write("r750.yaml", "name: dell-r750\nmatch: {model: R750}\nimage: ubuntu-24.04\n")
	c, err := LoadDir(dir)
	require.NoError(t, err)
	require.Equal(t, []string{"default", "dell-r650-hv", "dell-r750"}, c.Names())
	require.Equal(t, []string{"dell-r650-hv", "dell-r750"}, c.NamingImage("ubuntu-24.04"))
	require.Empty(t, c.NamingImage("debian-12"))
	require.Empty(t, c.NamingImage(""), "the built-in default names no image, and is not listed as naming one")

	p, err := c.Select("", "Dell Inc.", "PowerEdge R650")
	require.NoError(t, err)
	require.Equal(t, "dell-r650-hv", p.Name)
	require.Equal(t, RoleHypervisor, p.Role)
	require.Equal(t, 20*time.Minute, p.InstallTimeout())
	require.Equal(t, 2, p.InstallAttempts())
	require.Equal(t, "ubuntu-24.04", p.Image)
	require.Equal(t, map[string]string{"BootMode": "Uefi", "ProcVirtualization": "Enabled"}, p.DesiredBIOS("Dell Inc."))
	size, err := p.RAID.LogicalDisks[0].SizeBytes()
	require.NoError(t, err)
	require.Equal(t, int64(200_000_000_000), size)

	p, err = c.Select("", "HPE", "ProLiant DL360")
	require.NoError(t, err)
	require.Equal(t, DefaultName, p.Name)
	require.Equal(t, 45*time.Minute, p.InstallTimeout())

	_, err = c.Select("gpu-node", "", "")
	require.ErrorIs(t, err, ErrUnknownProfile)
	require.ErrorContains(t, err, "known: default, dell-r650-hv")
}

func TestParseRefusesBadProfiles(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"unknown key":     {"name: x\nbois: {}\n", "field bois not found"},
		"no name":         {"role: compute\n", "name is required"},
		"bad role":        {"name: x\nrole: gpu\n", "role must be"},
		"bad level":       {"name: x\nraid: {logical_disks: [{size_gb: MAX, raid_level: \"7\"}]}\n", `unsupported RAID level "7"`},
		"bad size":        {"name: x\nraid: {logical_disks: [{size_gb: lots, raid_level: \"1\"}]}\n", "size_gb must be"},
		"too few disks":   {"name: x\nraid: {logical_disks: [{size_gb: MAX, raid_level: \"5\", physical_disks: [a, b]}]}\n", "needs 3 drives, 2 named"},
		"two roots":       {"name: x\nraid: {logical_disks: [{raid_level: \"1\", is_root_volume: true}, {raid_level: \"0\", is_root_volume: true}]}\n", "at most one"},
		"negative memory": {"name: x\nminimum: {memoryGiB: -1}\n", "cannot be negative"},
		"not yaml":        {"name: [\n", "invalid profile YAML"},
		"image path":      {"name: x\nimage: ../etc/passwd\n", `image name "../etc/passwd"`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml))
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("name: same\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.yml"), []byte("name: same\n"), 0o644))
	_, err := LoadDir(dir)
	require.ErrorContains(t, err, "defined in both")
}

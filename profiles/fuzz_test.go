package profiles

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(`
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
`))
	f.Add([]byte("name: x\n"))
	f.Add([]byte("name: x\nrole: gpu\n"))
	f.Add([]byte("name: x\nbiso: {}\n"))
	f.Add([]byte("name: x\nraid: {logical_disks: [{size_gb: \"-1\", raid_level: \"7\"}]}\n"))
	f.Add([]byte("name: x\nraid: {logical_disks: [{size_gb: \"10\", raid_level: RAID10, physical_disks: [a]}]}\n"))
	f.Add([]byte("name: x\nraid: {logical_disks: [{size_gb: \"99999999999999\", raid_level: \"1\"}]}\n"))
	f.Add([]byte("name: x\ninstall: {timeout: -5m, attempts: -1}\nminimum: {cpus: -1}\n"))
	f.Add([]byte("name: x\nbios: {dell: {\"\": v}}\n"))
	f.Add([]byte("&a [*a]"))
	f.Add([]byte("name: [\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if p.Name != "" || p.Role != "" {
				t.Fatalf("refused profile still returned %+v", p)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		if p.InstallTimeout() <= 0 || p.InstallAttempts() <= 0 {
			t.Fatalf("accepted profile installs with timeout %v, attempts %d", p.InstallTimeout(), p.InstallAttempts())
		}
		for i, d := range p.RAID.LogicalDisks {
			n, err := DrivesFor(d.RAIDLevel)
			if err != nil || n < 1 {
				t.Fatalf("disk %d: accepted level %q", i, d.RAIDLevel)
			}
			if !strings.HasPrefix(RedfishRAIDType(d.RAIDLevel), "RAID") {
				t.Fatalf("disk %d: Redfish type %q", i, RedfishRAIDType(d.RAIDLevel))
			}
			size, err := d.SizeBytes()
			if err != nil || size < 0 {
				t.Fatalf("disk %d: accepted size %q as %d bytes (%v)", i, d.SizeGB, size, err)
			}
			if gb, err := strconv.ParseInt(d.SizeGB, 10, 64); err == nil && (gb > math.MaxInt64/1_000_000_000 || size/1_000_000_000 != gb) {
				t.Fatalf("disk %d: %q GB became %d bytes", i, d.SizeGB, size)
			}
		}
		// What a catalog accepted must be the same profile when written
		// back out as YAML and read again.
		out, err := yaml.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("re-reading the accepted profile failed: %v\n%s", err, out)
		}
		if again.Name != p.Name || again.Role != p.Role || len(again.RAID.LogicalDisks) != len(p.RAID.LogicalDisks) {
			t.Fatalf("re-read profile differs: %+v vs %+v", again, p)
		}
		if _, err := NewCatalog(p); err != nil && p.Name != DefaultName {
			t.Fatalf("catalog refused an accepted profile: %v", err)
		}
	})
}

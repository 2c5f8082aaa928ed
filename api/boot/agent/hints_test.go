package agent

import (
	"encoding/json"
	"testing"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

func testDisks() []blockDevice {
	return []blockDevice{
		{Disk: agentapi.Disk{Name: "sda", Size: 60 * gib, Model: "Samsung SSD 860", Vendor: "ATA", Serial: "S3Z9NB0K", WWN: "0x5002538e40a1b2c3", HCTL: "0:0:0:0", ByPath: "/dev/disk/by-path/pci-0000:00:1f.2-ata-1.0"}},
		{Disk: agentapi.Disk{Name: "sdb", Size: 2000 * gib, Model: "ST2000NM0055", Vendor: "SEAGATE", Serial: "ZC20ABCD", WWN: "0x4000cca77fc4dba1", Rotational: true, HCTL: "1:0:0:0", ByPath: "/dev/disk/by-path/pci-0000:03:00.0-scsi-0:0:1:0"}},
		{Disk: agentapi.Disk{Name: "sdc", Size: 16 * gib, Model: "Cruzer", Serial: "USB1", Removable: true}},
		{Disk: agentapi.Disk{Name: "nvme0n1", Size: 960 * gib, Model: "SAMSUNG MZQL2960HCJR", Serial: "S64FNE0R", ByPath: "/dev/disk/by-path/pci-0000:3b:00.0-nvme-1"}},
	}
}

func hints(t *testing.T, js string) agentapi.RootDeviceHints {
	t.Helper()
	var h agentapi.RootDeviceHints
	if err := json.Unmarshal([]byte(js), &h); err != nil {
		t.Fatalf("hints %s: %v", js, err)
	}
	return h
}

// The examples are Ironic's documentation's and its unit tests'.
func TestChooseDiskIronicHints(t *testing.T) {
	for _, tc := range []struct{ hints, want string }{
		{`{"wwn": "0x4000cca77fc4dba1"}`, "sdb"},
		{`{"serial": "s== S64FNE0R"}`, "nvme0n1"},
		{`{"serial": "s64fne0r"}`, "nvme0n1"},
		{`{"size": ">= 100"}`, "sdb"},
		{`{"size": "< 100"}`, "sda"},
		{`{"size": 60}`, "sda"},
		{`{"size": "= 900"}`, "sdb"}, // "=" is "at least"; sdb comes first by name
		{`{"size": "<or> 960 <or> 16"}`, "nvme0n1"},
		{`{"size": "!= 60", "rotational": false}`, "nvme0n1"},
		{`{"model": "<in> samsung"}`, "sda"},
		{`{"model": "<in> samsung", "size": "> 100"}`, "nvme0n1"},
		{`{"vendor": "<or> SEAGATE <or> HITACHI"}`, "sdb"},
		{`{"name": "/dev/sdb"}`, "sdb"},
		{`{"name": "nvme0n1"}`, "nvme0n1"},
		{`{"by_path": "/dev/disk/by-path/pci-0000:3b:00.0-nvme-1"}`, "nvme0n1"},
		{`{"by_path": "pci-0000:00:1f.2-ata-1.0"}`, "sda"},
		{`{"hctl": "1:0:0:0"}`, "sdb"},
		{`{"rotational": true}`, "sdb"},
		{`{"model": "s!= Samsung SSD 860", "rotational": false}`, "nvme0n1"},
	} {
		d, err := chooseDisk(testDisks(), hints(t, tc.hints), 0)
		if err != nil {
			t.Errorf("%s: %v", tc.hints, err)
			continue
		}
		if d.Name != tc.want {
			t.Errorf("%s chose %s, want %s", tc.hints, d.Name, tc.want)
		}
	}
}

func TestChooseDiskWithoutHintsTakesTheSmallestThatFits(t *testing.T) {
	d, err := chooseDisk(testDisks(), agentapi.RootDeviceHints{}, 10*gib)
	if err != nil || d.Name != "sda" {
		t.Fatalf("got %s, %v; want sda (the removable 16 GiB stick is never a target)", d.Name, err)
	}
	d, err = chooseDisk(testDisks(), agentapi.RootDeviceHints{}, 100*gib)
	if err != nil || d.Name != "nvme0n1" {
		t.Fatalf("got %s, %v; want nvme0n1", d.Name, err)
	}
	_, err = chooseDisk(testDisks(), agentapi.RootDeviceHints{}, 3000*gib)
	if classOf(err) != agentapi.ClassDiskTooSmall {
		t.Fatalf("3000 GiB image: %v, want disk-too-small", err)
	}
}

func TestChooseDiskFailures(t *testing.T) {
	for _, tc := range []struct {
		hints string
		want  agentapi.FailureClass
	}{
		{`{"serial": "NOPE"}`, agentapi.ClassNoDisk},
		{`{"serial": "USB1"}`, agentapi.ClassNoDisk}, // removable
		{`{"size": 61}`, agentapi.ClassNoDisk},
		{`{"size": ">= sixty"}`, agentapi.ClassPlanInvalid},
		{`{"model": "<in>"}`, agentapi.ClassPlanInvalid},
	} {
		_, err := chooseDisk(testDisks(), hints(t, tc.hints), 0)
		if classOf(err) != tc.want {
			t.Errorf("%s: %v, want class %s", tc.hints, err, tc.want)
		}
	}
	if _, err := chooseDisk(nil, agentapi.RootDeviceHints{}, 0); classOf(err) != agentapi.ClassNoDisk {
		t.Errorf("no disks: %v, want no-disk", err)
	}
}

func TestByPathFromSysfs(t *testing.T) {
	for path, want := range map[string]string{
		"/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda":                           "/dev/disk/by-path/pci-0000:00:04.0",
		"/sys/devices/pci0000:00/0000:00:05.0/virtio2/host0/target0:0:0/0:0:0:1/block/sda": "/dev/disk/by-path/pci-0000:00:05.0-scsi-0:0:0:1",
		"/sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda":    "/dev/disk/by-path/pci-0000:00:1f.2-ata-3.0",
		"/sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1":             "/dev/disk/by-path/pci-0000:3b:00.0-nvme-1",
		"/sys/devices/virtual/block/loop0":                                                 "",
	} {
		if got := byPath(path); got != want {
			t.Errorf("byPath(%s) = %q, want %q", path, got, want)
		}
	}
}

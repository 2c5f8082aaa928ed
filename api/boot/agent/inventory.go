package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// blockDevice is a disk as the agent uses it: what it reports, where to
// open it, and where its current partitions lie (to wipe their signatures).
type blockDevice struct {
	agentapi.Disk
	Path       string
	ReadOnly   bool
	Partitions []extent
}

// extent is a byte range on a disk.
type extent struct {
	Off, Len int64
}

// sectorBytes is the unit sysfs gives block device sizes and offsets in,
// whatever the device's logical sector size.
const sectorBytes = 512

// readInventory reads the machine from sysfs and procfs, as the kernel of
// the agent initramfs sees it (no udev, no lshw: only the files).
func readInventory(sys, proc, dev string) (agentapi.Inventory, []blockDevice, error) {
	var inv agentapi.Inventory
	var err error
	if inv.CPU, err = readCPU(proc); err != nil {
		return inv, nil, err
	}
	if inv.MemoryBytes, err = readMemory(sys, proc); err != nil {
		return inv, nil, err
	}
	inv.System = agentapi.System{
		Vendor:  readString(sys, "class/dmi/id/sys_vendor"),
		Product: readString(sys, "class/dmi/id/product_name"),
		Serial:  readString(sys, "class/dmi/id/product_serial"),
		UUID:    readString(sys, "class/dmi/id/product_uuid"),
	}
	disks, err := readDisks(sys, dev)
	if err != nil {
		return inv, nil, err
	}
	inv.Disks = make([]agentapi.Disk, len(disks))
	for i, d := range disks {
		inv.Disks[i] = d.Disk
	}
	if inv.NICs, err = readNICs(sys); err != nil {
		return inv, nil, err
	}
	if up, err := os.ReadFile(filepath.Join(proc, "uptime")); err == nil {
		if f := strings.Fields(string(up)); len(f) > 0 {
			inv.BootSeconds, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return inv, disks, nil
}

// readString is a sysfs attribute, trimmed; absent attributes are empty
// since most are optional (DMI on some boards, serials on virtual disks).
func readString(dir string, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readInt(dir, name string) (int64, bool) {
	n, err := strconv.ParseInt(readString(dir, name), 10, 64)
	return n, err == nil
}

func readCPU(proc string) (agentapi.CPU, error) {
	f, err := os.Open(filepath.Join(proc, "cpuinfo"))
	if err != nil {
		return agentapi.CPU{}, err
	}
	defer f.Close()
	var cpu agentapi.CPU
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(key) {
		case "processor":
			cpu.Count++
		case "model name":
			if cpu.Model == "" {
				cpu.Model = strings.TrimSpace(value)
			}
		}
	}
	return cpu, sc.Err()
}

func readMemory(sys, proc string) (int64, error) {
	memDir := filepath.Join(sys, "devices/system/memory")
	blockSize, err := strconv.ParseInt(readString(memDir, "block_size_bytes"), 16, 64)
	if entries, _ := filepath.Glob(filepath.Join(memDir, "memory*")); err == nil && len(entries) > 0 {
		var total int64
		for _, e := range entries {
			if readString(e, "state") == "online" {
				total += blockSize
			}
		}
		return total, nil
	}
	b, err := os.ReadFile(filepath.Join(proc, "meminfo"))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib << 10, err
		}
	}
	return 0, fmt.Errorf("no MemTotal in %s/meminfo", proc)
}

func readDisks(sys, dev string) ([]blockDevice, error) {
	entries, err := os.ReadDir(filepath.Join(sys, "block"))
	if err != nil {
		return nil, err
	}
	var disks []blockDevice
	for _, e := range entries {
		name := e.Name()
		dir := filepath.Join(sys, "block", name)
		// Only devices with a hardware parent: this drops loop, ram, zram,
		// dm-* and md*, which have no "device" link.
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue
		}
		// SCSI type 5 is an optical drive (sr*).
		if readString(dir, "device/type") == "5" {
			continue
		}
		sectors, _ := readInt(dir, "size")
		if sectors == 0 {
			continue
		}
		d := blockDevice{
			Disk: agentapi.Disk{
				Name:       name,
				Size:       sectors * sectorBytes,
				Model:      readString(dir, "device/model"),
				Vendor:     readString(dir, "device/vendor"),
				Serial:     diskSerial(dir),
				Rotational: readString(dir, "queue/rotational") == "1",
				Removable:  readString(dir, "removable") == "1",
			},
			Path:     filepath.Join(dev, name),
			ReadOnly: readString(dir, "ro") == "1",
		}
		d.WWN, d.WWNWithExtension, d.WWNVendorExtension = diskWWN(dir)
		if target, err := filepath.EvalSymlinks(filepath.Join(dir, "device")); err == nil {
			if base := filepath.Base(target); isHCTL(base) {
				d.HCTL = base
			}
		}
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			d.ByPath = byPath(real)
		}
		d.Partitions = diskPartitions(dir, name)
		disks = append(disks, d)
	}
	sort.Slice(disks, func(i, j int) bool { return kernelNameLess(disks[i].Name, disks[j].Name) })
	return disks, nil
}

// isHCTL tells a SCSI address (host:channel:target:lun), the name of a SCSI
// disk's device directory.
func isHCTL(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return false
		}
	}
	return true
}

// kernelNameLess orders disk names as people count them: sdz before sdaa,
// nvme2n1 before nvme10n1.
func kernelNameLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// diskSerial is where each driver family exposes the serial: virtio-blk and
// NVMe as attributes, SCSI/SATA/SAS in the unit serial number VPD page
// (libata emulates it for SATA disks).
func diskSerial(dir string) string {
	for _, name := range []string{"serial", "device/serial"} {
		if s := readString(dir, name); s != "" {
			return s
		}
	}
	page, err := os.ReadFile(filepath.Join(dir, "device/vpd_pg80"))
	if err != nil || len(page) < 4 {
		return ""
	}
	n := min(int(page[3]), len(page)-4)
	return strings.TrimSpace(string(bytes.TrimRight(page[4:4+n], "\x00")))
}

// diskWWN spells the disk's world wide name as udev does, which is what
// Ironic's wwn hints are written against: NAA names as 0x-prefixed hex, a
// 16-byte NAA name split into the name and its vendor extension.
func diskWWN(dir string) (wwn, withExt, vendorExt string) {
	id := readString(dir, "device/wwid")
	if id == "" {
		id = readString(dir, "wwid")
	}
	hex, ok := strings.CutPrefix(id, "naa.")
	if !ok {
		return id, id, ""
	}
	hex = strings.ToLower(hex)
	if len(hex) == 32 {
		return "0x" + hex[:16], "0x" + hex, "0x" + hex[16:]
	}
	return "0x" + hex, "0x" + hex, ""
}

// byPath rebuilds the name udev's path_id gives a disk from its sysfs
// device path, e.g.
//
//	/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda       → pci-0000:00:04.0
//	/sys/devices/pci0000:00/0000:00:05.0/virtio2/host0/target0:0:0/0:0:0:1/block/sda
//	                                                             → pci-0000:00:05.0-scsi-0:0:0:1
//	/sys/devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda
//	                                                             → pci-0000:00:1f.2-ata-3.0
//	/sys/devices/pci0000:00/0000:00:1d.0/0000:3b:00.0/nvme/nvme0/nvme0n1 → pci-0000:3b:00.0-nvme-1
//
// The initramfs has no udev, and operators write by_path hints from what
// udev showed them on an installed system.
func byPath(devPath string) string {
	parts := strings.Split(devPath, "/")
	pci, last := "", -1
	for i, p := range parts {
		if isPCIAddress(p) {
			pci, last = p, i
		}
	}
	if pci == "" {
		return ""
	}
	path := "/dev/disk/by-path/pci-" + pci
	rest := parts[last+1:]
	for i, p := range rest {
		switch {
		case strings.HasPrefix(p, "ata") && isDigits(p[3:]):
			path += "-ata-" + p[3:] + ".0"
		case strings.HasPrefix(p, "nvme") && isDigits(p[4:]) && i+1 < len(rest):
			// nvme0n1: the namespace number after the "n".
			if _, ns, ok := strings.Cut(strings.TrimPrefix(rest[i+1], p), "n"); ok {
				return path + "-nvme-" + ns
			}
		case isHCTL(p) && !strings.Contains(path, "-ata-"):
			return path + "-scsi-" + p
		}
	}
	return path
}

func isPCIAddress(s string) bool {
	// dddd:bb:dd.f
	return len(s) == 12 && s[4] == ':' && s[7] == ':' && s[10] == '.'
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func diskPartitions(dir, name string) []extent {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var parts []extent
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), name) {
			continue
		}
		start, ok1 := readInt(filepath.Join(dir, e.Name()), "start")
		size, ok2 := readInt(filepath.Join(dir, e.Name()), "size")
		if ok1 && ok2 {
			parts = append(parts, extent{Off: start * sectorBytes, Len: size * sectorBytes})
		}
	}
	return parts
}

func readNICs(sys string) ([]agentapi.NIC, error) {
	entries, err := os.ReadDir(filepath.Join(sys, "class/net"))
	if err != nil {
		return nil, err
	}
	var nics []agentapi.NIC
	for _, e := range entries {
		dir := filepath.Join(sys, "class/net", e.Name())
		// Virtual interfaces (lo, bridges, bonds) have no device link.
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue
		}
		nic := agentapi.NIC{
			Name: e.Name(),
			MAC:  readString(dir, "address"),
			Link: readString(dir, "carrier") == "1",
		}
		if speed, ok := readInt(dir, "speed"); ok && speed > 0 && nic.Link {
			nic.SpeedMbps = int(speed)
		}
		if driver, err := os.Readlink(filepath.Join(dir, "device/driver")); err == nil {
			nic.Driver = filepath.Base(driver)
		}
		nic.IPv4 = ipv4Of(e.Name())
		nics = append(nics, nic)
	}
	return nics, nil
}

// ipv4Of is the interface's first IPv4 address; the inventory reports it
// so the operator sees which NIC DHCP answered on.
func ipv4Of(name string) string {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return ""
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ipn.String()
		}
	}
	return ""
}

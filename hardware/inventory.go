package hardware

import (
	"context"
	"strings"

	bmccommon "github.com/bmc-toolbox/common"
	gfredfish "github.com/stmcginnis/gofish/redfish"
)

// Inventory combines bmclib's inventory (system, CPUs, memory, drives,
// BIOS and BMC versions) with what gofish reads directly: the system's
// NICs with their MACs, which bmclib only pairs up on iDRAC-style port
// names, and the whole firmware inventory.
func (s *session) Inventory(ctx context.Context) (Inventory, error) {
	var inv Inventory
	err := s.run(ctx, "inventory", func() error {
		dev, err := s.bmclib().Inventory(ctx)
		if err != nil {
			return err
		}
		sys, err := s.system(ctx)
		if err != nil {
			return err
		}
		inv = inventoryOf(dev, sys)
		nics, err := sys.EthernetInterfaces()
		if err != nil {
			return err
		}
		for _, n := range nics {
			mac := n.PermanentMACAddress
			if mac == "" {
				mac = n.MACAddress
			}
			inv.NICs = append(inv.NICs, NIC{ID: n.ID, MAC: strings.ToLower(mac)})
		}
		if len(inv.Drives) == 0 {
			// bmclib lists drives only where it recognises the layout.
			ctls, _, err := s.controllers(ctx)
			if err != nil && !isKind(err, Unsupported) {
				return err
			}
			for _, c := range ctls {
				for _, d := range c.drives {
					inv.Drives = append(inv.Drives, driveOf(d))
				}
			}
		}
		api, err := s.gofishAPI(ctx)
		if err != nil {
			return err
		}
		upd, err := api.Service.UpdateService()
		if err != nil || upd == nil {
			return err
		}
		fw, err := upd.FirmwareInventories()
		if err != nil {
			return err
		}
		for _, f := range fw {
			inv.Firmware = append(inv.Firmware, Firmware{Name: f.Name, Version: f.Version})
		}
		return nil
	})
	return inv, err
}

func inventoryOf(dev *bmccommon.Device, sys *gfredfish.ComputerSystem) Inventory {
	inv := Inventory{
		Vendor: firstOf(dev.Vendor, sys.Manufacturer), Model: firstOf(dev.Model, sys.Model), Serial: firstOf(dev.Serial, sys.SerialNumber),
		BIOSVersion: sys.BIOSVersion, CPUs: []CPU{}, Drives: []Drive{}, NICs: []NIC{},
	}
	if dev.BIOS != nil && dev.BIOS.Firmware != nil && dev.BIOS.Firmware.Installed != "" {
		inv.BIOSVersion = dev.BIOS.Firmware.Installed
	}
	if dev.BMC != nil && dev.BMC.Firmware != nil {
		inv.BMCFirmware = dev.BMC.Firmware.Installed
	}
	for _, c := range dev.CPUs {
		if c == nil {
			continue
		}
		inv.CPUs = append(inv.CPUs, CPU{Model: c.Model, Cores: c.Cores, Threads: c.Threads})
		inv.TotalCores += c.Cores
		inv.TotalThreads += c.Threads
		if inv.CPUArch == "" {
			inv.CPUArch = c.Architecture
		}
	}
	var mem int64
	for _, m := range dev.Memory {
		if m != nil {
			mem += m.SizeBytes
		}
	}
	inv.MemoryGiB = int(mem >> 30)
	if inv.MemoryGiB == 0 {
		inv.MemoryGiB = int(sys.MemorySummary.TotalSystemMemoryGiB)
	}
	for _, d := range dev.Drives {
		if d == nil {
			continue
		}
		inv.Drives = append(inv.Drives, Drive{ID: d.ID, Model: d.Model, CapacityBytes: d.CapacityBytes, MediaType: d.Type, Protocol: d.Protocol})
	}
	return inv
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

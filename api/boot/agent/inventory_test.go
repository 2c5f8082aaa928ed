package agent

import (
	"os"
	"runtime"
	"testing"
)

// The host's own /sys and /proc: the same files the agent reads in the
// initramfs (the qemu test checks the values against the VM it made).
func TestReadInventoryFromThisMachine(t *testing.T) {
	inv, disks, err := readInventory("/sys", "/proc", "/dev")
	if err != nil {
		t.Fatal(err)
	}
	if inv.CPU.Count < runtime.NumCPU() || inv.CPU.Model == "" {
		t.Errorf("CPU %+v, want at least %d processors and a model", inv.CPU, runtime.NumCPU())
	}
	if inv.MemoryBytes < 256<<20 {
		t.Errorf("memory %d bytes", inv.MemoryBytes)
	}
	if inv.BootSeconds <= 0 {
		t.Errorf("boot seconds %v", inv.BootSeconds)
	}
	for i, d := range disks {
		if d.Size <= 0 || d.Name != inv.Disks[i].Name {
			t.Errorf("disk %+v", d)
		}
		if _, err := os.Stat(d.Path); err != nil {
			t.Errorf("disk %s: %v", d.Name, err)
		}
		if i > 0 && kernelNameLess(d.Name, disks[i-1].Name) {
			t.Errorf("disks out of order: %s before %s", disks[i-1].Name, d.Name)
		}
	}
	for _, n := range inv.NICs {
		if n.Name == "lo" || n.MAC == "" {
			t.Errorf("NIC %+v: want hardware NICs with a MAC", n)
		}
	}
}

func TestKernelNameOrder(t *testing.T) {
	for _, pair := range [][2]string{{"sda", "sdb"}, {"sdz", "sdaa"}, {"nvme2n1", "nvme10n1"}, {"vda", "vdb"}} {
		if !kernelNameLess(pair[0], pair[1]) || kernelNameLess(pair[1], pair[0]) {
			t.Errorf("want %s before %s", pair[0], pair[1])
		}
	}
}

package qemuhost

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// needQEMU skips slow VM tests under -short and where qemu is absent.
func needQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a real VM; skipped with -short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed")
	}
}

func ovmf(t *testing.T) (string, string) {
	code, vars := "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"
	for _, f := range []string{code, vars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("OVMF absent: %v", err)
		}
	}
	return code, vars
}

// testVM is a TCG VM on a restricted user network whose TFTP server
// offers an iPXE script that prints marker.
func testVM(t *testing.T, marker string, exits chan<- Exit) *VM {
	t.Helper()
	tftp := t.TempDir()
	script := "#!ipxe\necho " + marker + " ${net0/mac}\nexit\n"
	if err := os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	code, vars := "", ""
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE.fd"); err == nil {
		code, vars = "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"
	}
	cfg := Config{
		Accel: AccelTCG, MemoryMiB: 256, CPUs: 1, DiskBytes: 64 << 20, DiskFormat: "raw",
		Network: NetUser, TFTPDir: tftp, Restrict: true, OVMFCode: code, OVMFVars: vars,
	}
	m := Machine{Name: "t", UUID: "4d460000-0000-4000-8000-000000000001", Serial: "MF00000001",
		MACs: []string{"02:4d:46:00:00:00"}, Dir: t.TempDir(), CDs: 1, BootFile: "boot.ipxe"}
	vm, err := New(cfg, m, func(e Exit) {
		if exits != nil {
			exits <- e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = vm.Close() })
	return vm
}

// waitSerial waits until the serial log holds want (count times) and
// returns how long that took.
func waitSerial(t *testing.T, vm *VM, want string, count int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		data, _ := os.ReadFile(vm.SerialLog())
		if strings.Count(string(data), want) >= count {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%q (x%d) not on the serial console after %s; log tail:\n%s", want, count, within, tail(data))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(b []byte) string {
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func TestNetbootRunsTheServedScript(t *testing.T) {
	needQEMU(t)
	for _, uefi := range []bool{false, true} {
		name := map[bool]string{false: "Legacy", true: "UEFI"}[uefi]
		t.Run(name, func(t *testing.T) {
			if uefi {
				ovmf(t)
			}
			vm := testVM(t, "MARKER-"+name, nil)
			start := time.Now()
			if err := vm.Start(ctx(t), Boot{Device: BootNet, UEFI: uefi}); err != nil {
				t.Fatal(err)
			}
			// The script's echo expands ${net0/mac}: the firmware's NIC
			// carries the MAC it was given.
			waitSerial(t, vm, "MARKER-"+name+" 02:4d:46:00:00:00", 1, 4*time.Minute)
			t.Logf("%s netboot: power-on to marker %s (TCG)", name, time.Since(start).Round(100*time.Millisecond))
		})
	}
}

func TestDiskBootAndPowerOff(t *testing.T) {
	needQEMU(t)
	vm := testVM(t, "UNUSED", nil)
	if err := WriteBootSector(vm.DiskPath(), "METALFLOW-DISK-BOOTED", false); err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(ctx(t), Boot{Device: BootDisk}); err != nil {
		t.Fatal(err)
	}
	waitSerial(t, vm, "METALFLOW-DISK-BOOTED", 1, 2*time.Minute)
	data, _ := os.ReadFile(vm.SerialLog())
	if strings.Contains(string(data), "iPXE initialising devices") {
		t.Error("a disk boot tried the NIC: strict boot order not applied")
	}
	if st, err := vm.Status(ctx(t)); err != nil || st != "running" {
		t.Fatalf("status %q, %v; want running", st, err)
	}
	if err := vm.Stop(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if vm.Running() {
		t.Fatal("qemu still running after Stop")
	}
	if st, _ := vm.Status(ctx(t)); st != "off" {
		t.Fatalf("status %q after Stop, want off", st)
	}
}

func TestGuestRebootEndsTheProcess(t *testing.T) {
	needQEMU(t)
	exits := make(chan Exit, 4)
	vm := testVM(t, "UNUSED", exits)
	if err := WriteBootSector(vm.DiskPath(), "REBOOTING", true); err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(ctx(t), Boot{Device: BootDisk}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-exits:
		if !e.Reboot() || e.Requested {
			t.Fatalf("exit %+v, want an unrequested guest reboot", e)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the guest's reset did not end qemu (-no-reboot)")
	}
	waitSerial(t, vm, "REBOOTING", 1, time.Second)
}

func TestCDInsertAndEjectWhileRunning(t *testing.T) {
	needQEMU(t)
	vm := testVM(t, "UNUSED", nil)
	if err := vm.Start(ctx(t), Boot{Device: BootDisk}); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(t.TempDir(), "x.iso")
	if err := os.WriteFile(iso, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cdFile := func() string {
		blocks, err := vm.Blocks(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range blocks {
			if b.Device == "cd0" {
				if b.Inserted == nil {
					return ""
				}
				return b.Inserted.File
			}
		}
		t.Fatalf("no cd0 in %+v", blocks)
		return ""
	}
	if f := cdFile(); f != "" {
		t.Fatalf("CD holds %q before insert", f)
	}
	if err := vm.SetCD(ctx(t), 0, iso); err != nil {
		t.Fatal(err)
	}
	if f := cdFile(); f != iso {
		t.Fatalf("CD holds %q, want %q", f, iso)
	}
	if err := vm.SetCD(ctx(t), 0, ""); err != nil {
		t.Fatal(err)
	}
	if f := cdFile(); f != "" {
		t.Fatalf("CD holds %q after eject", f)
	}
}

func TestChooseAccelFallsBackToTCG(t *testing.T) {
	broken := func(context.Context) error { return errors.New("KVM internal error") }
	works := func(context.Context) error { return nil }
	var called sync.Once
	notCalled := func(context.Context) error {
		called.Do(func() { t.Error("probe ran for a fixed accelerator") })
		return nil
	}
	for _, c := range []struct {
		want  string
		probe func(context.Context) error
		accel string
	}{
		{AccelAuto, broken, AccelTCG},
		{"", broken, AccelTCG},
		{AccelAuto, works, AccelKVM},
		{AccelTCG, notCalled, AccelTCG},
		{AccelKVM, notCalled, AccelKVM},
	} {
		accel, why, err := ChooseAccel(context.Background(), c.want, c.probe)
		if err != nil || accel != c.accel {
			t.Errorf("ChooseAccel(%q) = %s (%s), %v; want %s", c.want, accel, why, err, c.accel)
		}
	}
	if _, _, err := ChooseAccel(context.Background(), "hvf", works); err == nil {
		t.Error("an unknown accelerator was accepted")
	}
}

// TestProbeKVMAnswersQuickly runs the real probe: whatever this machine's
// KVM does (here it fails on MSRs), the probe must decide within its
// bound rather than hang the fleet's start.
func TestProbeKVMAnswersQuickly(t *testing.T) {
	needQEMU(t)
	code, vars := "", ""
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE.fd"); err == nil {
		code, vars = "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"
	}
	start := time.Now()
	err := ProbeKVM(context.Background(), "", code, vars)
	t.Logf("kvm probe: %v after %s", err, time.Since(start).Round(time.Millisecond))
	if time.Since(start) > 20*time.Second {
		t.Fatalf("probe took %s", time.Since(start))
	}
}

package bmcsim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalflow/metalflow/bmcsim/qemuhost"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func needQEMUBinary(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 is not installed")
	}
}

// needQEMU guards the tests that boot VMs: slow under TCG.
func needQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a real VM; skipped with -short")
	}
	needQEMUBinary(t)
}

const pxeMarker = "METALFLOW-PXE-MARKER"

// vmFleet starts one BMC of the vendor with a TCG VM behind it, on a
// user network whose TFTP server offers an iPXE script that prints
// pxeMarker and the NIC's MAC, then exits back to the firmware (which
// goes on to the next boot device).
func vmFleet(t *testing.T, vendor string) *BMC {
	t.Helper()
	tftp := t.TempDir()
	script := "#!ipxe\necho " + pxeMarker + " ${net0/mac}\nexit\n"
	require.NoError(t, os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte(script), 0o644))
	cfg := quickConfig(vendor)
	cfg.QEMU = &QEMUConfig{
		Accel: "tcg", MemoryMiB: 256, DiskBytes: 64 << 20, DiskFormat: "raw",
		TFTPDir: tftp, BootFile: "boot.ipxe", Dir: t.TempDir(), Logf: t.Logf,
	}
	return startFleet(t, cfg).BMCs()[0]
}

func vmOf(t *testing.T, b *BMC) *qemuhost.VM {
	h, ok := b.hw.(*qemuHost)
	require.True(t, ok, "BMC has no qemu host")
	return h.vm
}

func serialLog(b *BMC) string {
	data, _ := os.ReadFile(b.State().Host.VM.SerialLog)
	return string(data)
}

// waitConsole waits until the VM's serial console shows want count times.
func waitConsole(t *testing.T, b *BMC, want string, count int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for strings.Count(serialLog(b), want) < count {
		if time.Since(start) > within {
			log := serialLog(b)
			if len(log) > 4000 {
				log = log[len(log)-4000:]
			}
			t.Fatalf("%q (x%d) not on the console after %s:\n%s", want, count, within, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

func TestQEMUPxeBootOverRedfish(t *testing.T) {
	needQEMU(t)
	for _, tc := range []struct {
		vendor string
		uefi   bool
	}{{VendorGeneric, false}, {VendorDell, true}} {
		mode := map[bool]string{false: "Legacy", true: "UEFI"}[tc.uefi]
		t.Run(mode, func(t *testing.T) {
			b := vmFleet(t, tc.vendor)
			cl := connect(t, b)
			ctx := ctxT(t)
			_, err := cl.SetBootDevice(ctx, "pxe", false, tc.uefi)
			require.NoError(t, err)
			require.Equal(t, BootOverride{Target: "Pxe", Enabled: "Once", Mode: mode}, b.State().BootOverride)

			start := time.Now()
			_, err = cl.SetPowerState(ctx, "on")
			require.NoError(t, err)
			// The MAC the script prints is iPXE's view of the NIC: the
			// one Redfish reports.
			waitConsole(t, b, pxeMarker+" "+b.MACs()[0], 1, 4*time.Minute)
			t.Logf("%s: Redfish power-on to netboot marker in %s (%s)", mode, time.Since(start).Round(100*time.Millisecond), b.State().Host.VM.Accel)

			state, err := cl.GetPowerState(ctx)
			require.NoError(t, err)
			assert.Equal(t, "on", strings.ToLower(state))
			assert.NotZero(t, vmOf(t, b).PID())

			_, err = cl.SetPowerState(ctx, "off")
			require.NoError(t, err)
			assert.False(t, vmOf(t, b).Running(), "qemu still runs after a forced off")
			state, err = cl.GetPowerState(ctx)
			require.NoError(t, err)
			assert.Equal(t, "off", strings.ToLower(state))
		})
	}
}

func TestQEMUHddBoot(t *testing.T) {
	needQEMU(t)
	t.Run("Legacy", func(t *testing.T) {
		b := vmFleet(t, VendorSupermicro)
		require.NoError(t, qemuhost.WriteBootSector(b.State().Host.VM.Disk, "METALFLOW-DISK-OK", false))
		cl := connect(t, b)
		ctx := ctxT(t)
		_, err := cl.SetBootDevice(ctx, "disk", false, false)
		require.NoError(t, err)
		_, err = cl.SetPowerState(ctx, "on")
		require.NoError(t, err)
		waitConsole(t, b, "METALFLOW-DISK-OK", 1, 2*time.Minute)
		log := serialLog(b)
		assert.Contains(t, log, "Booting from Hard Disk")
		assert.NotContains(t, log, "iPXE initialising devices", "a disk boot ran the NIC's ROM")
	})
	t.Run("UEFI", func(t *testing.T) {
		b := vmFleet(t, VendorHPE)
		cl := connect(t, b)
		ctx := ctxT(t)
		_, err := cl.SetBootDevice(ctx, "disk", false, true)
		require.NoError(t, err)
		_, err = cl.SetPowerState(ctx, "on")
		require.NoError(t, err)
		// The blank disk holds no EFI loader: OVMF's boot manager says it
		// tried the virtio disk (PCI device 0x3 on q35's root bus here).
		waitConsole(t, b, "BdsDxe: failed to load Boot", 1, 4*time.Minute)
		log := serialLog(b)
		first := log[strings.Index(log, "BdsDxe: failed to load Boot"):]
		first = first[:strings.IndexAny(first, "\r\n")]
		assert.Contains(t, first, "Misc Device", "OVMF tried something else first: %s", first)
		assert.NotContains(t, log, "iPXE initialising devices")
	})
}

// TestQEMUOnceIsConsumedContinuousPersists boots a disk whose boot sector
// reboots the machine, so that the guest itself reboots over and over: a
// Once Pxe override must netboot the first boot only, a Continuous one
// every boot.
func TestQEMUOnceIsConsumedContinuousPersists(t *testing.T) {
	needQEMU(t)
	b := vmFleet(t, VendorGeneric)
	require.NoError(t, qemuhost.WriteBootSector(b.State().Host.VM.Disk, "DISK-REBOOT", true))
	cl := connect(t, b)
	ctx := ctxT(t)

	_, err := cl.SetBootDevice(ctx, "pxe", false, false)
	require.NoError(t, err)
	_, err = cl.SetPowerState(ctx, "on")
	require.NoError(t, err)
	// PXE (script exits) -> disk -> guest reboot -> disk -> reboot ...
	waitConsole(t, b, "DISK-REBOOT", 3, 3*time.Minute)
	assert.Equal(t, 1, strings.Count(serialLog(b), pxeMarker), "a Once override outlived its boot")
	assert.Equal(t, BootOverride{Target: "None", Enabled: "Disabled", Mode: "Legacy"}, b.State().BootOverride)
	state, err := cl.GetPowerState(ctx)
	require.NoError(t, err)
	assert.Equal(t, "on", strings.ToLower(state), "a guest reboot is not a power-off")
	assert.GreaterOrEqual(t, b.State().Host.VM.Boots, 3)
	_, err = cl.SetPowerState(ctx, "off")
	require.NoError(t, err)
	assert.Equal(t, PowerOff, b.PowerState())

	_, err = cl.SetBootDevice(ctx, "pxe", true, false)
	require.NoError(t, err)
	_, err = cl.SetPowerState(ctx, "on")
	require.NoError(t, err)
	waitConsole(t, b, pxeMarker, 3, 4*time.Minute)
	assert.Equal(t, BootOverride{Target: "Pxe", Enabled: "Continuous", Mode: "Legacy"}, b.State().BootOverride)
}

// TestQEMUGuestPowerOffFollowsRedfish: the guest (here qemu itself, as
// an OS halting would) ending the VM shows as Off on Redfish.
func TestQEMUPowerStateFollowsTheVM(t *testing.T) {
	needQEMU(t)
	b := vmFleet(t, VendorGeneric)
	cl := connect(t, b)
	ctx := ctxT(t)
	_, err := cl.SetPowerState(ctx, "on")
	require.NoError(t, err)
	assert.Equal(t, PowerOn, b.PowerState())
	// Kill qemu behind the BMC's back: the power state must come from
	// the VM, not from what the BMC last did.
	p, err := os.FindProcess(vmOf(t, b).PID())
	require.NoError(t, err)
	require.NoError(t, p.Kill())
	waitFor(t, "Off after qemu died", func() bool { return b.PowerState() == PowerOff })
	state, err := cl.GetPowerState(ctx)
	require.NoError(t, err)
	assert.Equal(t, "off", strings.ToLower(state))
	assert.NotEmpty(t, b.State().Host.LastError)
	// And it powers on again.
	_, err = cl.SetPowerState(ctx, "on")
	require.NoError(t, err)
	assert.Equal(t, PowerOn, b.PowerState())
}

func TestQEMUVirtualMediaReachesTheCDDrive(t *testing.T) {
	needQEMU(t)
	iso := make([]byte, 2<<20)
	copy(iso[0x8001:], "CD001")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/boot.iso" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(iso)
	}))
	t.Cleanup(srv.Close)
	b := vmFleet(t, VendorDell)
	vm := vmOf(t, b)
	cl := connect(t, b)
	ctx := ctxT(t)
	cd := func() string {
		blocks, err := vm.Blocks(ctx)
		require.NoError(t, err)
		for _, d := range blocks {
			if d.Device == "cd0" {
				if d.Inserted == nil {
					return ""
				}
				return d.Inserted.File
			}
		}
		t.Fatalf("the VM has no CD drive: %+v", blocks)
		return ""
	}

	_, err := cl.SetPowerState(ctx, "on")
	require.NoError(t, err)
	assert.Empty(t, cd())
	ok, err := cl.SetVirtualMedia(ctx, "CD", srv.URL+"/boot.iso")
	require.NoError(t, err)
	require.True(t, ok)
	var file string
	waitFor(t, "the image in the VM's CD drive", func() bool { file = cd(); return file != "" })
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, iso, data, "the VM's CD holds another image")

	_, err = cl.SetVirtualMedia(ctx, "CD", "")
	require.NoError(t, err)
	assert.Empty(t, cd(), "eject left the medium in the VM")

	// Inserted while off: the drive holds it from the next power-on.
	_, err = cl.SetPowerState(ctx, "off")
	require.NoError(t, err)
	_, err = cl.SetVirtualMedia(ctx, "CD", srv.URL+"/boot.iso")
	require.NoError(t, err)
	waitFor(t, "the download", func() bool {
		for _, l := range b.State().Log {
			if strings.Contains(l, "is connected to the host") {
				return true
			}
		}
		return false
	})
	_, err = cl.SetPowerState(ctx, "on")
	require.NoError(t, err)
	assert.NotEmpty(t, cd())
}

// TestQEMUFaultsStillApply: the fault machinery sits in front of the host,
// whatever the host is.
func TestQEMUFaultsStillApply(t *testing.T) {
	needQEMUBinary(t)
	b := vmFleet(t, VendorGeneric)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 2 * time.Second}
	get := func() (int, error) {
		req, _ := http.NewRequest(http.MethodGet, b.Address()+"/redfish/v1/Systems/Self", nil)
		u, p := b.Credentials()
		req.SetBasicAuth(u, p)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	b.SetFaults(Faults{ErrorRate: 1, ErrorStatus: http.StatusServiceUnavailable})
	code, err := get()
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	b.SetFaults(Faults{Hang: true})
	_, err = get()
	assert.Error(t, err, "a hanging BMC answered")
	b.SetFaults(Faults{Latency: 300 * time.Millisecond})
	start := time.Now()
	code, err = get()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
}

// TestQEMUKVMFallsBackToTCG injects a probe that finds KVM broken, as it
// is on this machine (MSR errors): the fleet must run its VMs under TCG
// and say so.
func TestQEMUKVMFallsBackToTCG(t *testing.T) {
	needQEMUBinary(t)
	var mu sync.Mutex
	var logged []string
	probed := false
	cfg := quickConfig(VendorGeneric)
	cfg.Count = 2
	cfg.QEMU = &QEMUConfig{
		Hosts: 1, Accel: "auto", DiskBytes: 1 << 20, Dir: t.TempDir(),
		KVMProbe: func(context.Context) error { probed = true; return errors.New("failed to set MSR 0x10a") },
		Logf: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			logged = append(logged, fmt.Sprintf(format, args...))
		},
	}
	f := startFleet(t, cfg)
	assert.True(t, probed)
	vm := f.BMCs()[0].State().Host.VM
	require.NotNil(t, vm)
	assert.Equal(t, "tcg", vm.Accel)
	assert.Nil(t, f.BMCs()[1].State().Host.VM, "Hosts: 1 put a VM behind the second BMC")
	mu.Lock()
	defer mu.Unlock()
	assert.Contains(t, strings.Join(logged, "\n"), "qemu accelerator tcg (kvm unusable, using tcg: failed to set MSR 0x10a)")
}

// TestQEMUTapNetwork puts the VM's NICs on taps enslaved to a bridge this
// test creates (no uplink: nothing leaves the machine), as in the lab.
func TestQEMUTapNetwork(t *testing.T) {
	needQEMU(t)
	if os.Geteuid() != 0 {
		t.Skip("creating a bridge and taps needs root")
	}
	const bridge = "mfsimtestbr0"
	if out, err := exec.Command("ip", "link", "add", bridge, "type", "bridge").CombinedOutput(); err != nil {
		t.Skipf("cannot create a bridge: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", bridge).Run() })
	cfg := quickConfig(VendorGeneric)
	cfg.QEMU = &QEMUConfig{Accel: "tcg", MemoryMiB: 256, DiskBytes: 1 << 20, Dir: t.TempDir(),
		Network: "tap", Bridge: bridge, TapPrefix: "mfsimt", Logf: t.Logf}
	f, err := Start(cfg)
	require.NoError(t, err)
	b := f.BMCs()[0]
	enslaved := func() string {
		out, _ := exec.Command("ip", "-o", "link", "show", "master", bridge).CombinedOutput()
		return string(out)
	}
	assert.Contains(t, enslaved(), "mfsimt0001n0")
	assert.Contains(t, enslaved(), "mfsimt0001n1")
	out, _ := exec.Command("ip", "-o", "link", "show", "mfsimt0001n0").CombinedOutput()
	assert.Contains(t, string(out), "NO-CARRIER", "a tap nobody holds has carrier")
	cl := connect(t, b)
	_, err = cl.SetPowerState(ctxT(t), "on")
	require.NoError(t, err)
	assert.Equal(t, PowerOn, b.PowerState(), "qemu could not open its taps: %s", b.State().Host.LastError)
	// A tap has carrier only while qemu holds it open.
	out, err = exec.Command("ip", "-o", "link", "show", "mfsimt0001n0").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.NotContains(t, string(out), "NO-CARRIER", "qemu did not attach the tap")
	require.NoError(t, f.Close())
	assert.NotContains(t, enslaved(), "mfsimt", "taps left behind")
}

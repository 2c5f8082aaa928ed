package bmcsim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/metalflow/metalflow/bmcsim/qemuhost"
)

// QEMUConfig puts a real qemu-system-x86_64 VM behind some BMCs instead
// of the simulated host: Redfish power, boot override and virtual media
// then drive the VM, and what the host does is on its serial console.
type QEMUConfig struct {
	// Hosts is how many BMCs, the first ones, get a VM; 0 means all.
	Hosts int
	// Binary is qemu-system-x86_64; QemuImg creates qcow2 disks.
	Binary  string
	QemuImg string
	// Accel is auto (KVM when a probe VM really runs under it, else TCG),
	// kvm or tcg.
	Accel string
	// MemoryMiB (1024) and CPUs (1) size each VM.
	MemoryMiB int
	CPUs      int
	// CPUModel is the CPU emulated under TCG ("max" when empty).
	CPUModel string
	// DiskBytes is each VM's sparse disk size (8 GiB); DiskFormat is
	// qcow2 (default) or raw.
	DiskBytes  int64
	DiskFormat string
	// Dir holds a directory per VM (disk, UEFI variables, serial log, QMP
	// socket, downloaded media). Empty: a temporary directory.
	Dir string
	// KeepDisks leaves the VM directories when the fleet closes; a later
	// fleet with the same Dir boots the same disks.
	KeepDisks bool
	// NIC is the NIC model: virtio-net-pci (default) or e1000.
	NIC string
	// Network is user (qemu's slirp, default), tap or none. With tap each
	// NIC gets a tap device TapPrefix+"NNNNnK" enslaved to Bridge.
	Network   string
	Bridge    string
	TapPrefix string
	// TFTPDir and BootFile make the user network's DHCP offer BootFile
	// from qemu's TFTP server, with the network cut off from everything
	// else. Without TFTPDir, Config.BootURL is offered (loopback hosts
	// become 10.0.2.2, the host as slirp guests see it).
	TFTPDir  string
	BootFile string
	// OVMFCode and OVMFVars are the UEFI firmware and variable store
	// template (Debian's ovmf paths by default). Legacy boots use SeaBIOS.
	OVMFCode string
	OVMFVars string
	// ShutdownTimeout is how long a GracefulShutdown the guest ignores
	// waits before the power is cut (2 minutes); negative waits forever.
	ShutdownTimeout time.Duration
	// KVMProbe replaces the check that KVM really works (for tests).
	KVMProbe func(context.Context) error `json:"-"`
	// Logf reports the accelerator chosen and VM events (log.Printf).
	Logf func(format string, args ...any) `json:"-"`
}

// VMInfo is what a qemu-backed host exposes for tests and diagnosis.
type VMInfo struct {
	Accel     string `json:"accel"`
	SerialLog string `json:"serial_log"`
	Disk      string `json:"disk"`
	QMPSocket string `json:"qmp_socket"`
	PID       int    `json:"pid,omitempty"`
	Boots     int    `json:"boots"`
	// LastBoot is the device and firmware of the current or last boot.
	LastBoot string `json:"last_boot,omitempty"`
}

func (q QEMUConfig) withDefaults() QEMUConfig {
	if q.Binary == "" {
		q.Binary = "qemu-system-x86_64"
	}
	if q.QemuImg == "" {
		q.QemuImg = "qemu-img"
	}
	if q.Accel == "" {
		q.Accel = qemuhost.AccelAuto
	}
	if q.MemoryMiB == 0 {
		q.MemoryMiB = 1024
	}
	if q.CPUs == 0 {
		q.CPUs = 1
	}
	if q.DiskBytes == 0 {
		q.DiskBytes = 8 << 30
	}
	if q.DiskFormat == "" {
		q.DiskFormat = "qcow2"
	}
	if q.NIC == "" {
		q.NIC = "virtio-net-pci"
	}
	if q.Network == "" {
		q.Network = qemuhost.NetUser
	}
	if q.TapPrefix == "" {
		q.TapPrefix = "mft"
	}
	if q.OVMFCode == "" && q.OVMFVars == "" {
		q.OVMFCode, q.OVMFVars = "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"
	}
	if q.ShutdownTimeout == 0 {
		q.ShutdownTimeout = 2 * time.Minute
	}
	if q.Logf == nil {
		q.Logf = log.Printf
	}
	return q
}

// qemuFleet is what the VMs of one fleet share.
type qemuFleet struct {
	cfg     QEMUConfig
	vm      qemuhost.Config
	dir     string
	tempDir bool // dir is ours to remove
}

// startQEMU checks the configuration and decides the accelerator once for
// the fleet.
func startQEMU(q QEMUConfig) (*qemuFleet, error) {
	q = q.withDefaults()
	if _, err := exec.LookPath(q.Binary); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	if q.CPUModel != "" {
		if err := checkCPUModel(q.Binary, q.CPUModel); err != nil {
			return nil, err
		}
	}
	switch q.Network {
	case qemuhost.NetUser, qemuhost.NetNone:
	case qemuhost.NetTap:
		if q.Bridge == "" {
			return nil, errors.New("qemu: the tap network needs a bridge")
		}
	default:
		return nil, fmt.Errorf("qemu: network %q: want user, tap or none", q.Network)
	}
	for _, fw := range []string{q.OVMFCode, q.OVMFVars} {
		if _, err := os.Stat(fw); err != nil {
			// Legacy boots still work; UEFI ones fail visibly.
			q.Logf("bmcsim: qemu: no UEFI firmware (%v); UEFI boots will fail", err)
			q.OVMFCode, q.OVMFVars = "", ""
			break
		}
	}
	probe := q.KVMProbe
	if probe == nil {
		probe = func(ctx context.Context) error { return qemuhost.ProbeKVM(ctx, q.Binary, q.OVMFCode, q.OVMFVars) }
	}
	accel, why, err := qemuhost.ChooseAccel(context.Background(), q.Accel, probe)
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	q.Logf("bmcsim: qemu accelerator %s (%s)", accel, why)
	f := &qemuFleet{cfg: q, dir: q.Dir}
	if f.dir == "" {
		if f.dir, err = os.MkdirTemp("", "metalflow-bmcsim-qemu-"); err != nil {
			return nil, err
		}
		f.tempDir = true
	} else if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return nil, err
	}
	f.vm = qemuhost.Config{
		Binary: q.Binary, QemuImg: q.QemuImg, Accel: accel,
		MemoryMiB: q.MemoryMiB, CPUs: q.CPUs, CPUModel: q.CPUModel, DiskBytes: q.DiskBytes, DiskFormat: q.DiskFormat,
		NIC: q.NIC, Network: q.Network, TFTPDir: q.TFTPDir,
		// With only TFTP to serve, nothing needs to leave the VM.
		Restrict: q.TFTPDir != "",
		OVMFCode: q.OVMFCode, OVMFVars: q.OVMFVars,
	}
	return f, nil
}

func (f *qemuFleet) covers(i int) bool { return f != nil && (f.cfg.Hosts == 0 || i < f.cfg.Hosts) }

func (f *qemuFleet) close() {
	if f != nil && f.tempDir && !f.cfg.KeepDisks {
		_ = os.RemoveAll(f.dir)
	}
}

// qemuHost is a BMC's host backed by a VM. Lock order: b.mu, then the
// VM's own lock; the VM reports exits from its own goroutine, which takes
// b.mu first like everyone else.
type qemuHost struct {
	b    *BMC
	f    *qemuFleet
	vm   *qemuhost.VM
	dir  string
	taps []string
	// cdOf maps a virtual media slot to the VM's CD drive (-1: none, the
	// slot is a USB stick or floppy the VM does not have).
	cdOf []int
	// mediaGen per slot drops a download finished after its image was
	// ejected or replaced.
	mediaGen     []uint64
	shuttingDown bool
	shutdownGen  uint64
}

func newQEMUHost(b *BMC, f *qemuFleet, index int) (*qemuHost, error) {
	h := &qemuHost{b: b, f: f, dir: filepath.Join(f.dir, b.id)}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return nil, err
	}
	cds := 0
	for _, slot := range b.m.mediaSlots {
		cd := -1
		if d := b.m.tree.get(slot); d != nil {
			for _, t := range stringsOf(d.body["MediaTypes"]) {
				if t == "CD" || t == "DVD" {
					cd = cds
					cds++
					break
				}
			}
		}
		h.cdOf = append(h.cdOf, cd)
	}
	h.mediaGen = make([]uint64, len(b.m.mediaSlots))
	m := qemuhost.Machine{Name: b.id, UUID: b.uuid, Serial: b.serial, MACs: b.macs, Dir: h.dir, CDs: max(cds, 1)}
	if f.cfg.Network == qemuhost.NetTap {
		for nic := range b.macs {
			m.Taps = append(m.Taps, fmt.Sprintf("%s%04dn%d", f.cfg.TapPrefix, index+1, nic))
		}
		if err := createTaps(m.Taps, f.cfg.Bridge); err != nil {
			return nil, err
		}
		h.taps = m.Taps
	}
	switch {
	case f.cfg.TFTPDir != "":
		m.BootFile = f.cfg.BootFile
	case b.cfg.BootURL != "" && f.cfg.Network == qemuhost.NetUser:
		m.BootFile = guestURL(expandVars(b.cfg.BootURL, b.bootVars()))
	}
	vm, err := qemuhost.New(f.vm, m, h.exited)
	if err != nil {
		deleteTaps(h.taps)
		return nil, err
	}
	h.vm = vm
	b.host.VM = h.info()
	return h, nil
}

// guestURL points a loopback URL at the host as a slirp guest reaches it.
func guestURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	switch u.Hostname() {
	case "127.0.0.1", "localhost", "::1":
		u.Host = "10.0.2.2"
		if p := u.Port(); p != "" {
			u.Host += ":" + p
		}
	}
	return u.String()
}

func (h *qemuHost) info() *VMInfo {
	vi := &VMInfo{
		Accel: h.vm.Accel(), SerialLog: h.vm.SerialLog(), Disk: h.vm.DiskPath(), QMPSocket: h.vm.QMPSocket(),
		PID: h.vm.PID(), Boots: h.vm.Boots(),
	}
	if h.vm.Boots() > 0 {
		lb := h.vm.LastBoot()
		vi.LastBoot = lb.Device
		if vi.LastBoot == "" {
			vi.LastBoot = "default"
		}
		if lb.UEFI {
			vi.LastBoot += " (UEFI)"
		} else {
			vi.LastBoot += " (Legacy)"
		}
	}
	return vi
}

func (h *qemuHost) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// power reads the VM: no process is Off, a process that answers is On
// (PoweringOff while it has been asked to shut down).
func (h *qemuHost) power() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := h.vm.Status(ctx)
	switch {
	case err != nil && !h.vm.Running(), st == "off":
		return PowerOff
	case h.shuttingDown:
		return PowerPoweringOff
	}
	return PowerOn
}

// powerOn starts the VM with the boot device the override names.
func (h *qemuHost) powerOn(why string) {
	b := h.b
	b.counters.PowerOns++
	b.logEvent("OK", "The server is powering on ("+why+")")
	h.boot()
}

// boot is one firmware start: staged BIOS settings and jobs apply, a Once
// override is used up.
func (h *qemuHost) boot() {
	b := h.b
	b.powerGen++
	h.shuttingDown = false
	b.applyPendingBios()
	b.releaseTasksWaitingForReset()
	target := b.takeBootTarget()
	boot := qemuhost.Boot{UEFI: b.boot.Mode == "UEFI"}
	switch target {
	case "Pxe", "UefiHttp":
		boot.Device = qemuhost.BootNet
	case "Cd":
		boot.Device = qemuhost.BootCD
	case "Hdd":
		boot.Device = qemuhost.BootDisk
	}
	b.host.BootSource = target
	b.host.LastError = ""
	ctx, cancel := h.opCtx()
	defer cancel()
	if err := h.vm.Start(ctx, boot); err != nil {
		b.host.State = HostBootFailed
		b.host.LastError = err.Error()
		b.logEvent("Critical", "The server could not power on: "+err.Error())
		h.f.cfg.Logf("bmcsim: %s: qemu: %v", b.id, err)
	} else {
		b.host.State = HostRunning
	}
	b.host.VM = h.info()
}

func (h *qemuHost) forceOff(why string) {
	b := h.b
	b.powerGen++
	h.shuttingDown = false
	ctx, cancel := h.opCtx()
	defer cancel()
	if err := h.vm.Stop(ctx); err != nil {
		b.logEvent("Critical", "The server could not be powered off: "+err.Error())
	}
	b.host.State = HostOff
	b.host.VM = h.info()
	b.logEvent("OK", "The server is powered off ("+why+")")
}

// shutdown presses the ACPI power button. Firmware and boot loaders
// ignore it, so after ShutdownTimeout the power is cut, as iDRAC does.
func (h *qemuHost) shutdown() {
	b := h.b
	ctx, cancel := h.opCtx()
	defer cancel()
	if err := h.vm.Powerdown(ctx); err != nil {
		b.logEvent("Warning", "Graceful shutdown request failed: "+err.Error())
		return
	}
	b.logEvent("OK", "A graceful shutdown was requested")
	h.shuttingDown = true
	h.shutdownGen++
	gen := h.shutdownGen
	if h.f.cfg.ShutdownTimeout < 0 {
		return
	}
	time.AfterFunc(h.f.cfg.ShutdownTimeout, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if h.closed() || !h.shuttingDown || gen != h.shutdownGen || !h.vm.Running() {
			return
		}
		b.logEvent("Warning", "The host ignored the shutdown request; powering off")
		h.forceOff("graceful shutdown timed out")
	})
}

func (h *qemuHost) restart(why string) {
	b := h.b
	ctx, cancel := h.opCtx()
	defer cancel()
	_ = h.vm.Stop(ctx)
	b.counters.PowerOns++
	b.logEvent("OK", "The server is restarting ("+why+")")
	h.boot()
}

func (h *qemuHost) closed() bool {
	select {
	case <-h.b.closing:
		return true
	default:
		return false
	}
}

// exited hears of every qemu exit. A guest reboot (-no-reboot makes it an
// exit) boots again at once with the override as it is now; anything else
// unrequested is the guest powering off or qemu dying.
func (h *qemuHost) exited(e qemuhost.Exit) {
	b := h.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if e.Requested || h.closed() {
		return
	}
	if e.Reboot() {
		b.logEvent("OK", "The host rebooted")
		h.boot()
		return
	}
	b.powerGen++
	h.shuttingDown = false
	b.host.State = HostOff
	b.host.VM = h.info()
	switch e.Reason {
	case "guest-shutdown", "guest-panic":
		b.logEvent("OK", "The host powered itself off ("+e.Reason+")")
	default:
		msg := fmt.Sprintf("The host stopped unexpectedly (%s %v): %s", e.Reason, e.Err, e.Stderr)
		b.host.LastError = msg
		b.logEvent("Critical", msg)
		h.f.cfg.Logf("bmcsim: %s: %s", b.id, msg)
	}
}

// mediaChanged follows a virtual media slot into the VM's CD drive: an
// ejected image leaves the drive at once; an inserted one is downloaded
// first, as a BMC streams the image, and shows in the drive when complete.
func (h *qemuHost) mediaChanged(slot int) {
	b := h.b
	if slot >= len(h.cdOf) || h.cdOf[slot] < 0 {
		return
	}
	cd := h.cdOf[slot]
	h.mediaGen[slot]++
	gen := h.mediaGen[slot]
	file := filepath.Join(h.dir, fmt.Sprintf("media-%d.iso", slot))
	if !b.media[slot].inserted {
		ctx, cancel := h.opCtx()
		defer cancel()
		if err := h.vm.SetCD(ctx, cd, ""); err != nil {
			b.logEvent("Warning", "Virtual media eject: "+err.Error())
		}
		_ = os.Remove(file)
		return
	}
	image := b.media[slot].image
	go func() {
		err := download(image, file+".part")
		if err == nil {
			err = os.Rename(file+".part", file)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if gen != h.mediaGen[slot] || h.closed() {
			return
		}
		if err == nil {
			ctx, cancel := h.opCtx()
			defer cancel()
			err = h.vm.SetCD(ctx, cd, file)
		}
		if err != nil {
			b.host.LastError = "virtual media " + image + ": " + err.Error()
			b.logEvent("Critical", "Virtual media "+image+" could not be mounted: "+err.Error())
			return
		}
		b.logEvent("OK", "Virtual media "+image+" is connected to the host")
	}()
}

// download fetches an image as a BMC does: over HTTP(S), trusting any
// certificate (BMCs rarely carry the image server's CA).
func download(image, to string) error {
	u, err := url.Parse(image)
	if err != nil {
		return err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("only HTTP and HTTPS images reach the VM, not %s", strings.ToUpper(u.Scheme))
	}
	client := &http.Client{
		Timeout:   30 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // as BMCs do
	}
	resp, err := client.Get(image)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", image, resp.Status)
	}
	f, err := os.Create(to)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (h *qemuHost) close() {
	_ = h.vm.Close()
	deleteTaps(h.taps)
	if !h.f.cfg.KeepDisks {
		_ = os.RemoveAll(h.dir)
	}
}

// createTaps makes a tap per NIC, enslaved to the bridge and up, for qemu
// to open by name (script=no: qemu needs no privileges of its own).
func createTaps(taps []string, bridge string) error {
	for i, tap := range taps {
		if len(tap) > 15 {
			return fmt.Errorf("tap name %q is longer than 15 characters", tap)
		}
		_ = exec.Command("ip", "link", "del", tap).Run() // left over from a crash
		for _, args := range [][]string{
			{"tuntap", "add", "dev", tap, "mode", "tap"},
			{"link", "set", "dev", tap, "master", bridge},
			{"link", "set", "dev", tap, "up"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				deleteTaps(taps[:i+1])
				return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
			}
		}
	}
	return nil
}

func deleteTaps(taps []string) {
	for _, tap := range taps {
		_ = exec.Command("ip", "link", "del", tap).Run()
	}
}

// checkCPUModel refuses a CPU model qemu does not know now, rather than at
// the first power-on, where it would read as a BMC fault.
func checkCPUModel(binary, model string) error {
	out, err := exec.Command(binary, "-cpu", "help").Output()
	if err != nil {
		return fmt.Errorf("qemu: list CPU models: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "x86" && f[1] == model {
			return nil
		}
	}
	return fmt.Errorf("qemu: CPU model %q is not one %s knows (see %s -cpu help)", model, binary, binary)
}

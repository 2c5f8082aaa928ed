// Package qemuhost runs the server behind a simulated BMC as a real
// qemu-system-x86_64 virtual machine, driven over QMP: power, boot device,
// firmware (SeaBIOS or OVMF), a persistent disk, NICs with given MACs, CD
// drives and a serial console written to a file.
//
// Every boot is a fresh qemu process started with -no-reboot: when the
// guest reboots, qemu exits and the owner starts it again with whatever
// boot device the BMC decides then. That is how a "Once" boot override is
// used up by exactly one boot, in SeaBIOS and OVMF alike, without relying
// on either firmware re-reading the boot order on reset.
package qemuhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Boot devices a VM can be told to boot first.
const (
	BootDefault = ""     // the disk, then the CD drives
	BootNet     = "net"  // the first NIC (PXE), then the disk
	BootDisk    = "disk" // the disk, then the CD drives
	BootCD      = "cd"   // the first CD drive, then the disk
)

// Network backends.
const (
	NetUser = "user" // qemu's user-mode stack (slirp): no privileges, no inbound traffic
	NetTap  = "tap"  // a tap device per NIC, enslaved to a bridge by the owner
	NetNone = "none" // NICs with no link
)

// Config is what every VM of a fleet shares.
type Config struct {
	// Binary is qemu-system-x86_64 (looked up in PATH when bare).
	Binary string
	// QemuImg creates qcow2 disks.
	QemuImg string
	// Accel is kvm or tcg, already decided (see ChooseAccel).
	Accel string
	// MemoryMiB and CPUs size the VM.
	MemoryMiB int
	CPUs      int
	// CPUModel is the emulated CPU under TCG; empty is "max", every
	// feature TCG emulates. qemu's default (qemu64) lacks SSSE3 and AVX2,
	// which Go's SHA-256 and the kernel's copies use: the deploy agent,
	// bound by hashing and receiving the image, wrote it at 20.0 MiB/s
	// on qemu64 and 27.9 MiB/s on max. KVM always runs the host's CPU.
	CPUModel string
	// DiskBytes is the virtual size of the sparse disk.
	DiskBytes int64
	// DiskFormat is qcow2 or raw.
	DiskFormat string
	// NIC is the qemu NIC model: virtio-net-pci or e1000.
	NIC string
	// Network is user, tap or none.
	Network string
	// TFTPDir serves qemu's built-in TFTP server on the user-mode network
	// (tests, demos without a lab); Machine.BootFile names the file.
	TFTPDir string
	// Restrict cuts the user-mode network off from the host and the
	// outside: DHCP and TFTP still answer, nothing else leaves.
	Restrict bool
	// OVMFCode and OVMFVars are the UEFI firmware and its variable store
	// template; each VM gets its own copy of the template.
	OVMFCode, OVMFVars string
}

// Machine is one VM's identity and files.
type Machine struct {
	Name   string
	UUID   string
	Serial string
	// MACs of the NICs, in PCI order; the first is the PXE NIC.
	MACs []string
	// Taps name the tap device of each NIC with the tap network.
	Taps []string
	// Dir holds the disk, the UEFI variables, the serial log and the QMP
	// socket. It must exist.
	Dir string
	// CDs is the number of CD drives.
	CDs int
	// BootFile is what the user-mode network's DHCP offers as boot file:
	// a name under Config.TFTPDir or a URL iPXE fetches.
	BootFile string
}

// Boot is how the next power-on boots.
type Boot struct {
	Device string // BootDefault, BootNet, BootDisk or BootCD
	UEFI   bool   // OVMF instead of SeaBIOS
}

// Exit tells why a VM's qemu process ended.
type Exit struct {
	// Reason is the SHUTDOWN event's reason: guest-shutdown (the OS
	// powered off), guest-reset (it rebooted; -no-reboot turns that into
	// an exit), host-qmp-quit, host-signal, ...; empty if qemu died
	// without one.
	Reason string
	// Requested is an exit the owner asked for (Stop).
	Requested bool
	Err       error
	Stderr    string
}

// Reboot is an exit the guest meant as a reboot.
func (e Exit) Reboot() bool { return e.Reason == "guest-reset" }

// VM is one virtual machine. Its methods are safe for concurrent use; none
// calls OnExit with its lock held, so OnExit may call back into the VM.
type VM struct {
	cfg Config
	m   Machine
	// OnExit learns about every process exit, from a goroutine of its own.
	onExit func(Exit)

	mu        sync.Mutex
	proc      *process
	cds       []string // image file per CD drive, "" for empty
	boots     int
	lastBoot  Boot
	lastStart time.Time
}

type process struct {
	cmd       *exec.Cmd
	q         *qmp
	exited    chan struct{}
	reason    string // last SHUTDOWN reason, guarded by VM.mu
	requested bool
	stderr    *tailBuffer
}

// New prepares a VM: creates its disk unless it already exists (a kept
// disk survives a restart of the simulator) and its UEFI variable store.
// Nothing runs until Start.
func New(cfg Config, m Machine, onExit func(Exit)) (*VM, error) {
	if cfg.DiskFormat == "" {
		cfg.DiskFormat = "qcow2"
	}
	v := &VM{cfg: cfg, m: m, onExit: onExit, cds: make([]string, m.CDs)}
	if _, err := os.Stat(v.DiskPath()); errors.Is(err, os.ErrNotExist) {
		if err := createDisk(cfg, v.DiskPath()); err != nil {
			return nil, err
		}
	}
	if cfg.OVMFVars != "" {
		if _, err := os.Stat(v.varsPath()); errors.Is(err, os.ErrNotExist) {
			if err := copyFile(cfg.OVMFVars, v.varsPath()); err != nil {
				return nil, fmt.Errorf("uefi variables: %w", err)
			}
		}
	}
	return v, nil
}

func createDisk(cfg Config, path string) error {
	switch cfg.DiskFormat {
	case "raw":
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		// Truncate leaves a hole: the disk takes no space until written.
		err = f.Truncate(cfg.DiskBytes)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case "qcow2":
		img := cfg.QemuImg
		if img == "" {
			img = "qemu-img"
		}
		out, err := exec.Command(img, "create", "-q", "-f", "qcow2", path, strconv.FormatInt(cfg.DiskBytes, 10)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("qemu-img create %s: %v: %s", path, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return fmt.Errorf("disk format %q: want qcow2 or raw", cfg.DiskFormat)
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

// DiskPath is the VM's disk image.
func (v *VM) DiskPath() string { return filepath.Join(v.m.Dir, "disk."+v.cfg.DiskFormat) }

// SerialLog is the file the VM's first serial port writes to, across
// every boot; each boot starts with a "=== metalflow" line.
func (v *VM) SerialLog() string { return filepath.Join(v.m.Dir, "serial.log") }

// QMPSocket is the control socket of the running process.
func (v *VM) QMPSocket() string { return filepath.Join(v.m.Dir, "qmp.sock") }

func (v *VM) varsPath() string { return filepath.Join(v.m.Dir, "OVMF_VARS.fd") }

// Accel is the accelerator the VM runs with.
func (v *VM) Accel() string { return v.cfg.Accel }

// Running reports whether a qemu process is up.
func (v *VM) Running() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.proc != nil
}

// PID is the qemu process id, 0 when off.
func (v *VM) PID() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc == nil {
		return 0
	}
	return v.proc.cmd.Process.Pid
}

// Boots counts the processes started so far.
func (v *VM) Boots() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.boots
}

// LastBoot is the boot the current (or last) process was started with.
func (v *VM) LastBoot() Boot {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastBoot
}

// Status is the QMP run state ("running", "paused", "internal-error",
// "shutdown", ...) of the running process, or "off" when there is none.
func (v *VM) Status(ctx context.Context) (string, error) {
	v.mu.Lock()
	p := v.proc
	v.mu.Unlock()
	if p == nil {
		return "off", nil
	}
	raw, err := p.q.execute(ctx, "query-status", nil)
	if err != nil {
		select {
		case <-p.exited:
			return "off", nil
		default:
		}
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// Start boots a new qemu process. It fails if one is running.
func (v *VM) Start(ctx context.Context, boot Boot) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc != nil {
		return errors.New("already running")
	}
	args, err := v.args(boot)
	if err != nil {
		return err
	}
	_ = os.Remove(v.QMPSocket())
	v.boots++
	v.mark(fmt.Sprintf("boot %d: device %q uefi=%v accel=%s", v.boots, boot.Device, boot.UEFI, v.cfg.Accel))

	bin := v.cfg.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	// Not CommandContext: the VM outlives the request that powered it on.
	cmd := exec.Command(bin, args...)
	stderr := &tailBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// Its own process group, so a ^C to the simulator's terminal does not
	// kill the VMs before the simulator has stopped them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), stderr: stderr}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	fail := func(err error) error {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("qemu did not start (%v): %v: %s", waitErr, err, strings.TrimSpace(stderr.String()))
	}

	dialCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		// qemu refusing its arguments exits at once: stop dialing.
		select {
		case <-done:
			cancel()
		case <-dialCtx.Done():
		}
	}()
	q, err := dialQMP(dialCtx, v.QMPSocket(), func(e Event) { v.event(p, e) })
	if err != nil {
		return fail(err)
	}
	p.q = q
	// Started with -S: QMP is connected before the firmware runs, so no
	// event of this boot can be missed.
	if _, err := q.execute(dialCtx, "cont", nil); err != nil {
		q.close()
		return fail(err)
	}
	v.proc = p
	v.lastBoot = boot
	v.lastStart = time.Now()
	go v.watch(p, done, &waitErr)
	return nil
}

func (v *VM) event(p *process, e Event) {
	if e.Name != "SHUTDOWN" {
		return
	}
	var d struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(e.Data, &d)
	v.mu.Lock()
	p.reason = d.Reason
	v.mu.Unlock()
}

// watch waits for the process to end, forgets it, then tells the owner.
func (v *VM) watch(p *process, done <-chan struct{}, waitErr *error) {
	<-done
	err := *waitErr
	// Let the reader deliver a SHUTDOWN event that raced the exit.
	select {
	case <-p.q.done:
	case <-time.After(time.Second):
	}
	p.q.close()
	v.mu.Lock()
	if v.proc == p {
		v.proc = nil
	}
	ex := Exit{Reason: p.reason, Requested: p.requested, Err: err, Stderr: strings.TrimSpace(p.stderr.String())}
	v.mu.Unlock()
	close(p.exited)
	if v.onExit != nil {
		v.onExit(ex)
	}
}

// Stop powers the VM off at once (QMP quit, then SIGKILL if qemu does
// not go) and waits until the process is gone.
func (v *VM) Stop(ctx context.Context) error {
	v.mu.Lock()
	p := v.proc
	if p != nil {
		p.requested = true
	}
	v.mu.Unlock()
	if p == nil {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, _ = p.q.execute(qctx, "quit", nil)
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Powerdown presses the ACPI power button: an OS shuts down, firmware
// and boot loaders ignore it, as on hardware.
func (v *VM) Powerdown(ctx context.Context) error {
	return v.execute(ctx, "system_powerdown", nil)
}

func (v *VM) execute(ctx context.Context, cmd string, args any) error {
	v.mu.Lock()
	p := v.proc
	v.mu.Unlock()
	if p == nil {
		return errors.New("the VM is off")
	}
	_, err := p.q.execute(ctx, cmd, args)
	return err
}

// SetCD puts an image file into CD drive i ("" ejects). A running VM sees
// the change at once; otherwise the drive holds it from the next start.
func (v *VM) SetCD(ctx context.Context, i int, image string) error {
	v.mu.Lock()
	if i < 0 || i >= len(v.cds) {
		v.mu.Unlock()
		return fmt.Errorf("no CD drive %d", i)
	}
	v.cds[i] = image
	p := v.proc
	v.mu.Unlock()
	if p == nil {
		return nil
	}
	dev := cdDevice(i)
	if image == "" {
		_, err := p.q.execute(ctx, "eject", map[string]any{"id": dev, "force": true})
		return err
	}
	_, err := p.q.execute(ctx, "blockdev-change-medium", map[string]any{
		"id": dev, "filename": image, "format": "raw", "read-only-mode": "read-only",
	})
	return err
}

// BlockDevice is one entry of QMP query-block.
type BlockDevice struct {
	Device    string `json:"device"`
	QdevID    string `json:"qdev"`
	Removable bool   `json:"removable"`
	TrayOpen  bool   `json:"tray_open"`
	Inserted  *struct {
		File string `json:"file"`
		RO   bool   `json:"ro"`
	} `json:"inserted"`
}

// Blocks asks the running VM which block devices it has and what they hold.
func (v *VM) Blocks(ctx context.Context) ([]BlockDevice, error) {
	v.mu.Lock()
	p := v.proc
	v.mu.Unlock()
	if p == nil {
		return nil, errors.New("the VM is off")
	}
	raw, err := p.q.execute(ctx, "query-block", nil)
	if err != nil {
		return nil, err
	}
	var out []BlockDevice
	return out, json.Unmarshal(raw, &out)
}

// Close stops the VM.
func (v *VM) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return v.Stop(ctx)
}

func cdDevice(i int) string { return fmt.Sprintf("cd%d", i) }

// args builds the command line of one boot. Boot order is given with
// bootindex and -boot strict=on, which both firmwares read from fw_cfg's
// bootorder file; strict keeps devices left out of the order from being
// tried at all, so a disk-first boot never falls through to PXE.
func (v *VM) args(boot Boot) ([]string, error) {
	c, m := v.cfg, v.m
	accel := c.Accel
	if accel == "" {
		accel = "tcg"
	}
	a := []string{
		"-name", "guest=" + m.Name,
		"-machine", "q35,graphics=off", // graphics=off: SeaBIOS writes its console to the serial port
		"-accel", accel,
		"-m", strconv.Itoa(max(c.MemoryMiB, 64)),
		"-smp", strconv.Itoa(max(c.CPUs, 1)),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-no-reboot", "-S",
		"-boot", "strict=on",
		"-qmp", "unix:" + esc(v.QMPSocket()) + ",server=on,wait=off",
		"-chardev", "file,id=serial0,path=" + esc(v.SerialLog()) + ",append=on",
		"-serial", "chardev:serial0",
	}
	if accel == "kvm" {
		a = append(a, "-cpu", "host")
	} else {
		model := c.CPUModel
		if model == "" {
			model = "max"
		}
		a = append(a, "-cpu", model)
	}
	if m.UUID != "" {
		a = append(a, "-uuid", m.UUID)
	}
	if m.Serial != "" {
		a = append(a, "-smbios", "type=1,serial="+m.Serial+",manufacturer=metalflow,product=bmcsim-qemu")
	}
	if boot.UEFI {
		if c.OVMFCode == "" || c.OVMFVars == "" {
			return nil, errors.New("UEFI boot asked but no OVMF firmware is configured")
		}
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+esc(c.OVMFCode),
			"-drive", "if=pflash,format=raw,unit=1,file="+esc(v.varsPath()))
	}

	// Boot order: the chosen device first, then the fall-backs.
	order := map[string][]string{
		BootNet:     {"net0", "disk0"},
		BootCD:      {"cd0", "disk0"},
		BootDisk:    {"disk0", "cd0"},
		BootDefault: {"disk0", "cd0"},
	}[boot.Device]
	if order == nil {
		return nil, fmt.Errorf("unknown boot device %q", boot.Device)
	}
	bootindex := func(dev string) string {
		for i, d := range order {
			if d == dev {
				return ",bootindex=" + strconv.Itoa(i+1)
			}
		}
		return ""
	}

	a = append(a,
		"-drive", "if=none,id=disk0,file="+esc(v.DiskPath())+",format="+c.DiskFormat+",cache=writeback,discard=unmap",
		"-device", "virtio-blk-pci,id=disk0dev,drive=disk0,serial="+diskSerial(m.Serial)+bootindex("disk0"))
	for i, img := range v.cds {
		drive := "if=none,id=" + cdDevice(i) + ",media=cdrom,readonly=on"
		if img != "" {
			drive += ",format=raw,file=" + esc(img)
		}
		// q35's built-in AHCI controller has six ports, ide.0 .. ide.5.
		a = append(a, "-drive", drive,
			"-device", fmt.Sprintf("ide-cd,id=%s,drive=%s,bus=ide.%d", cdDevice(i), cdDevice(i), i)+bootindex(cdDevice(i)))
	}

	nic := c.NIC
	if nic == "" {
		nic = "virtio-net-pci"
	}
	for i, mac := range m.MACs {
		id := fmt.Sprintf("net%d", i)
		var netdev string
		switch c.Network {
		case NetUser, "":
			netdev = "user,id=" + id
			if c.Restrict {
				netdev += ",restrict=on"
			}
			if i == 0 && c.TFTPDir != "" {
				netdev += ",tftp=" + esc(c.TFTPDir)
			}
			if i == 0 && m.BootFile != "" {
				netdev += ",bootfile=" + esc(m.BootFile)
			}
		case NetTap:
			if i >= len(m.Taps) {
				return nil, fmt.Errorf("no tap device for NIC %d", i)
			}
			netdev = "tap,id=" + id + ",ifname=" + m.Taps[i] + ",script=no,downscript=no"
		case NetNone:
			continue
		default:
			return nil, fmt.Errorf("network %q: want user, tap or none", c.Network)
		}
		a = append(a, "-netdev", netdev, "-device", nic+",id="+id+"dev,netdev="+id+",mac="+mac+bootindex(id))
	}
	return a, nil
}

// esc quotes a value inside a qemu option list, where a comma ends it.
func esc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// diskSerial fits the 20 bytes a virtio-blk serial may hold.
func diskSerial(s string) string {
	if s == "" {
		s = "metalflow"
	}
	if len(s) > 20 {
		s = s[:20]
	}
	return s
}

// mark writes a line into the serial log between boots, so that a reader
// of the log can tell the boots apart.
func (v *VM) mark(what string) {
	f, err := os.OpenFile(v.SerialLog(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "\r\n=== metalflow %s %s\r\n", time.Now().UTC().Format(time.RFC3339), what)
	_ = f.Close()
}

// tailBuffer keeps the last bytes written to it: qemu's stderr, for
// error messages.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// WriteBootSector puts BootSector(message, reboot) at the start of a raw
// disk image, keeping its size.
func WriteBootSector(disk, message string, reboot bool) error {
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(BootSector(message, reboot), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// BootSector is a 512-byte MBR boot sector that writes message to the
// first serial port and halts, or with reboot then resets the machine
// through the keyboard controller, as an OS's reboot does. It proves by
// the console that firmware booted the disk, with no OS image needed.
func BootSector(message string, reboot bool) []byte {
	code := []byte{
		0xFA,       // cli
		0x31, 0xC0, // xor ax, ax
		0x8E, 0xD8, // mov ds, ax
		0xFC,             // cld
		0xBE, 0x1B, 0x7C, // mov si, 0x7C1B (message)
		0xBA, 0xF8, 0x03, // mov dx, 0x3F8 (COM1)
		0xAC,       // next: lodsb
		0x84, 0xC0, // test al, al
		0x74, 0x03, // jz done
		0xEE,       // out dx, al
		0xEB, 0xF8, // jmp next
		0x90, 0x90, 0x90, 0x90, // done: (reset goes here)
		0xF4,       // halt: hlt
		0xEB, 0xFD, // jmp halt
	}
	if reboot {
		copy(code[0x14:], []byte{0xB0, 0xFE, 0xE6, 0x64}) // mov al, 0xFE; out 0x64, al
	}
	sector := make([]byte, 512)
	copy(sector, code)
	msg := []byte(message + "\r\n")
	if len(msg) > 510-len(code)-1 {
		msg = msg[:510-len(code)-1]
	}
	copy(sector[len(code):], msg)
	sector[510], sector[511] = 0x55, 0xAA
	return sector
}

package testimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// GuestHostAddr is the address at which a guest on qemu's user-mode network
// (slirp) reaches the host's loopback: a test server on 127.0.0.1:PORT is
// http://10.0.2.2:PORT to the guest.
const GuestHostAddr = "10.0.2.2"

// OVMF firmware (Debian package ovmf): the code read-only, the variable
// store copied per VM.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// Firmware is how the VM boots its disk.
type Firmware int

const (
	// BIOS is legacy BIOS (qemu's default SeaBIOS).
	BIOS Firmware = iota
	// UEFI is OVMF.
	UEFI
)

func (f Firmware) String() string {
	switch f {
	case BIOS:
		return "BIOS"
	case UEFI:
		return "UEFI"
	}
	return "Firmware(" + strconv.Itoa(int(f)) + ")"
}

// VMConfig describes a VM to boot under qemu with TCG.
type VMConfig struct {
	Firmware Firmware
	// Disk is a raw disk image. The VM writes to a qcow2 overlay in Dir,
	// never to Disk itself, so a cached image can be booted.
	Disk string
	// Seed, if set, is a raw image attached read-only as a second virtio
	// disk (see WriteSeedImage).
	Seed string
	// MAC of the virtio NIC on qemu's user-mode network (guest 10.0.2.15,
	// host loopback at GuestHostAddr).
	MAC string
	// Dir holds the overlay, the UEFI variable store and the serial log.
	Dir string
	// MemoryMB defaults to 1024, CPUs to 2.
	MemoryMB int
	CPUs     int
}

// VM is a running qemu.
type VM struct {
	// SerialLog is the file the guest's serial console (ttyS0) goes to.
	SerialLog string
	// Started is when qemu was started: power-on.
	Started time.Time

	cmd    *exec.Cmd
	output *bytes.Buffer
	done   chan struct{}
	err    error
	stop   sync.Once
}

// QEMUUnavailable says why this machine cannot boot VMs with fw, or "".
func QEMUUnavailable(fw Firmware) string {
	for bin, pkg := range map[string]string{"qemu-system-x86_64": "qemu-system-x86", "mformat": "mtools", "mcopy": "mtools"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not installed (apt-get install " + pkg + ")"
		}
	}
	if fw == UEFI {
		for _, f := range []string{ovmfCode, ovmfVars} {
			if _, err := os.Stat(f); err != nil {
				return f + " is missing (apt-get install ovmf)"
			}
		}
	}
	return ""
}

// StartVM starts qemu (TCG, q35) booting cfg.Disk with cfg.Firmware. The
// VM runs until Stop or until ctx is done.
func StartVM(ctx context.Context, cfg VMConfig) (*VM, error) {
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.MAC == "" {
		cfg.MAC = "52:54:00:12:34:56"
	}
	vm := &VM{SerialLog: filepath.Join(cfg.Dir, "serial.log"), output: &bytes.Buffer{}, done: make(chan struct{})}
	disk, err := overlay(ctx, cfg)
	if err != nil {
		return nil, err
	}
	args := []string{
		"-accel", "tcg", "-machine", "q35",
		"-m", strconv.Itoa(cfg.MemoryMB), "-smp", strconv.Itoa(cfg.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "file:" + vm.SerialLog,
	}
	if cfg.Firmware == UEFI {
		vars := filepath.Join(cfg.Dir, "OVMF_VARS.fd")
		if err := copyFile(ovmfVars, vars); err != nil {
			return nil, err
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,file="+vars)
	}
	// bootindex=0: the firmware boots the disk first and tries nothing
	// else; romfile= drops the NIC's iPXE option ROM, so neither firmware
	// tries a network boot.
	args = append(args,
		"-drive", "if=none,id=disk0,"+disk,
		"-device", "virtio-blk-pci,drive=disk0,bootindex=0")
	if cfg.Seed != "" {
		args = append(args,
			"-drive", "if=none,id=seed,format=raw,readonly=on,file="+cfg.Seed,
			"-device", "virtio-blk-pci,drive=seed")
	}
	args = append(args,
		"-netdev", "user,id=net0",
		"-device", "virtio-net-pci,netdev=net0,romfile=,mac="+cfg.MAC)

	vm.cmd = exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	vm.cmd.Stdout, vm.cmd.Stderr = vm.output, vm.output
	vm.Started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		vm.err = vm.cmd.Wait()
		close(vm.done)
	}()
	return vm, nil
}

// overlay returns the -drive options for cfg.Disk behind a qcow2 overlay:
// one made with qemu-img in cfg.Dir, or qemu's own temporary one
// (snapshot=on) where qemu-img (qemu-utils) is not installed.
func overlay(ctx context.Context, cfg VMConfig) (string, error) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return "format=raw,snapshot=on,file=" + cfg.Disk, nil
	}
	ov := filepath.Join(cfg.Dir, "disk.qcow2")
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", cfg.Disk, ov).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("qemu-img create: %v: %s", err, out)
	}
	return "format=qcow2,file=" + ov, nil
}

// Done is closed when qemu has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Err is how qemu exited, with its output; valid after Done.
func (vm *VM) Err() error {
	if vm.err == nil {
		return nil
	}
	return fmt.Errorf("qemu: %v: %s", vm.err, bytes.TrimSpace(vm.output.Bytes()))
}

// Stop kills qemu (power off) and waits for it.
func (vm *VM) Stop() {
	vm.stop.Do(func() {
		if vm.cmd.Process != nil {
			_ = vm.cmd.Process.Kill()
		}
		<-vm.done
	})
}

// SerialTail returns about the last n bytes of the serial console log.
func (vm *VM) SerialTail(n int64) string {
	f, err := os.Open(vm.SerialLog)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		if _, err := f.Seek(fi.Size()-n, io.SeekStart); err != nil {
			return err.Error()
		}
	}
	b, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return err.Error()
	}
	return string(b)
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

package qemuhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Accelerators.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// ChooseAccel decides the accelerator for want (auto, kvm or tcg). auto
// asks probe whether KVM really works and falls back to TCG when it does
// not; reason says why, for the log.
func ChooseAccel(ctx context.Context, want string, probe func(context.Context) error) (accel, reason string, err error) {
	switch want {
	case AccelTCG:
		return AccelTCG, "tcg asked for", nil
	case AccelKVM:
		return AccelKVM, "kvm asked for", nil
	case AccelAuto, "":
	default:
		return "", "", fmt.Errorf("accel %q: want auto, kvm or tcg", want)
	}
	if probe == nil {
		return AccelTCG, "no kvm probe", nil
	}
	if perr := probe(ctx); perr != nil {
		return AccelTCG, "kvm unusable, using tcg: " + perr.Error(), nil
	}
	return AccelKVM, "kvm works", nil
}

// ProbeKVM runs a throw-away VM under KVM for a few seconds and fails
// unless it really runs. /dev/kvm existing proves little: nested or
// restricted hosts accept KVM_CREATE_VM and then fail on the first MSR or
// mode switch (KVM internal error) or never make progress. The probe boots
// the firmware the fleet will use (OVMF when given, it trips such hosts
// where SeaBIOS may not) and wants it running and writing to its serial
// port.
func ProbeKVM(ctx context.Context, binary, ovmfCode, ovmfVars string) error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	f.Close()
	dir, err := os.MkdirTemp("", "metalflow-kvm-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	serial := filepath.Join(dir, "serial.log")
	sock := filepath.Join(dir, "qmp.sock")
	if binary == "" {
		binary = "qemu-system-x86_64"
	}
	args := []string{
		"-machine", "q35,graphics=off", "-accel", "kvm", "-cpu", "host", "-m", "128",
		"-nodefaults", "-no-user-config", "-display", "none", "-S",
		"-qmp", "unix:" + sock + ",server=on,wait=off",
		"-chardev", "file,id=s0,path=" + serial, "-serial", "chardev:s0",
	}
	if ovmfCode != "" && ovmfVars != "" {
		vars := filepath.Join(dir, "vars.fd")
		if err := copyFile(ovmfVars, vars); err != nil {
			return err
		}
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.Command(binary, args...)
	stderr := &tailBuffer{max: 2048}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-done
	}()
	// A qemu that dies at once (MSR errors) ends the dialing too.
	dialCtx, stopDial := context.WithCancel(ctx)
	defer stopDial()
	go func() {
		select {
		case <-done:
			stopDial()
		case <-dialCtx.Done():
		}
	}()
	q, err := dialQMP(dialCtx, sock, nil)
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	defer q.close()
	if _, err := q.execute(ctx, "cont", nil); err != nil {
		return err
	}
	deadline := time.Now().Add(6 * time.Second)
	for {
		raw, err := q.execute(ctx, "query-status", nil)
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
		}
		if st := string(raw); !strings.Contains(st, `"running"`) {
			return fmt.Errorf("guest stopped (%s): %s", st, strings.TrimSpace(stderr.String()))
		}
		if fi, err := os.Stat(serial); err == nil && fi.Size() > 0 {
			// Firmware wrote to its console: KVM ran real code, long
			// enough to switch modes.
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("guest made no progress in 6s (no console output)")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

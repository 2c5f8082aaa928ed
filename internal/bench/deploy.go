package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"text/tabwriter"
	"time"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/client"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/internal/stack"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// DeployConfig is one real deploy into a qemu VM behind a simulated BMC.
type DeployConfig struct {
	// Image is a raw disk image file; it is uploaded to the catalog.
	Image string
	// AgentKernel and AgentInitrd are the deploy agent's boot files.
	AgentKernel, AgentInitrd string
	// Legacy boots the VM in legacy BIOS mode instead of UEFI.
	Legacy bool
	// DiskBenchmarkMiB is how much the agent writes to its disk, before
	// the image, to measure the disk's own limit in the same run.
	DiskBenchmarkMiB int
	// Accel is the VM's accelerator: auto, kvm or tcg.
	Accel string
	// CPUs and MemoryMiB size the VM.
	CPUs, MemoryMiB int
	Timeout         time.Duration
	Log             *slog.Logger
}

// Check refuses a configuration before anything starts.
func (c DeployConfig) Check() error {
	var problems []error
	for _, f := range []struct{ flag, path string }{{"--image", c.Image}, {"--agent-kernel", c.AgentKernel}, {"--agent-initrd", c.AgentInitrd}} {
		flag, path := f.flag, f.path
		if path == "" {
			problems = append(problems, fmt.Errorf("%s is required", flag))
			continue
		}
		if st, err := os.Stat(path); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", flag, err))
		} else if !st.Mode().IsRegular() {
			problems = append(problems, fmt.Errorf("%s: %s is not a file", flag, path))
		}
	}
	if c.DiskBenchmarkMiB < 1 {
		problems = append(problems, errors.New("--disk-benchmark-mib must be at least 1: the disk's limit is half of the result"))
	}
	switch c.Accel {
	case "auto", "kvm", "tcg":
	default:
		problems = append(problems, fmt.Errorf("--qemu-accel %q: want auto, kvm or tcg", c.Accel))
	}
	if c.CPUs < 1 || c.MemoryMiB < 256 {
		problems = append(problems, errors.New("--qemu-cpus must be at least 1 and --qemu-memory at least 256 (MiB)"))
	}
	if c.Timeout <= 0 {
		problems = append(problems, errors.New("--timeout must be positive"))
	}
	return errors.Join(problems...)
}

// RunDeploy deploys cfg.Image for real: an in-process metalflow with its
// boot service, one qemu VM behind a simulated Redfish BMC on qemu's own
// NAT, the deploy agent netbooted into the VM, the image streamed to its
// disk, the installed OS booted from the disk until it phones home. The
// agent measures a plain sequential write to the same disk in the same
// run, the peer the image write is judged against (write_ratio).
func RunDeploy(ctx context.Context, cfg DeployConfig, stdout io.Writer) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	digest, size, err := fileDigest(cfg.Image)
	if err != nil {
		return fmt.Errorf("bench deploy: image: %w", err)
	}
	// The VM reaches the host's loopback at 10.0.2.2 through qemu's NAT,
	// so the API listens on a loopback port chosen now.
	port, err := freeLoopbackPort()
	if err != nil {
		return err
	}
	h, err := startStack(ctx, stackOptions{
		Servers: 1, TemporalDB: stack.TemporalInMemory, Log: cfg.Log,
		tune: func(c *stack.Config) {
			c.API.Address = fmt.Sprintf("127.0.0.1:%d", port)
			c.API.Boot = api.BootConfig{
				PublicURL:   fmt.Sprintf("http://10.0.2.2:%d", port),
				AgentKernel: cfg.AgentKernel, AgentInitrd: cfg.AgentInitrd, AgentDiskBenchmarkMiB: cfg.DiskBenchmarkMiB,
			}
			c.Fleet = &stack.FleetConfig{Servers: 1, Vendor: bmcsim.VendorGeneric, Speed: 1,
				QEMU: &bmcsim.QEMUConfig{Hosts: 1, Network: "user", Accel: cfg.Accel, CPUs: cfg.CPUs, MemoryMiB: cfg.MemoryMiB,
					Logf: func(format string, a ...any) { cfg.Log.Info(fmt.Sprintf(format, a...), "component", "bmcsim") }}}
		},
	})
	if err != nil {
		return err
	}
	defer func() { _ = h.Close() }()
	vm := h.Fleet.Manifest()[0]
	firmware := "UEFI"
	if cfg.Legacy {
		firmware = "Legacy"
		if err := setLegacy(ctx, vm); err != nil {
			return fmt.Errorf("bench deploy: set legacy boot: %w", err)
		}
	}

	f, err := os.Open(cfg.Image)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := h.API.UploadImage(ctx, client.NewImage{Name: "bench-image", SHA256: digest, Format: "raw", OSFamily: "linux"}, f, size); err != nil {
		return fmt.Errorf("bench deploy: upload image: %w", err)
	}
	if _, err := h.API.AddServer(ctx, client.NewServer{Serial: vm.Serial, Image: "bench-image",
		BMC: &client.BMC{Address: vm.Address, Username: vm.Username, Password: vm.Password}}); err != nil {
		return fmt.Errorf("bench deploy: add server: %w", err)
	}
	rack, unit := location(0)
	if _, err := h.API.Racked(ctx, vm.Serial, client.Location{Site: site, Room: "A", Rack: rack, Unit: unit, Face: "front"}); err != nil {
		return fmt.Errorf("bench deploy: racked: %w", err)
	}

	srv, err := waitInstalled(ctx, h.API, vm.Serial, cfg.Timeout)
	if err != nil {
		return err
	}
	res, err := deployFigures(srv.Deploy)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "deploy of %d MiB raw image, %s firmware, accelerator %s, %d vCPU, %d MiB\n", size>>20, firmware, cfg.Accel, cfg.CPUs, cfg.MemoryMiB)
	fmt.Fprintln(tw, "phase\tseconds after power-on")
	for _, p := range res.phases {
		fmt.Fprintf(tw, "%s\t%.1f\n", p.name, p.at)
	}
	fmt.Fprintf(tw, "image write\t%.1f MiB/s\n", res.imageMiBs)
	fmt.Fprintf(tw, "disk's own sequential write (%d MiB)\t%.1f MiB/s\n", cfg.DiskBenchmarkMiB, res.diskMiBs)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "RESULT power_on_to_agent_s=%.1f image_mib_s=%.1f disk_limit_mib_s=%.1f write_ratio=%.3f power_on_to_phone_home_s=%.1f\n",
		res.toAgent, res.imageMiBs, res.diskMiBs, res.imageMiBs/res.diskMiBs, res.toPhoneHome)
	return nil
}

// deployResult is a finished deploy's figures, in seconds after power-on.
type deployResult struct {
	phases               []deployPhase
	toAgent, toPhoneHome float64
	imageMiBs, diskMiBs  float64
}

type deployPhase struct {
	name string
	at   float64
}

// deployFigures reads an installed server's deploy status; a status that
// lacks a phase or a rate is an error, not a zero in the RESULT line.
func deployFigures(d *serverapi.DeployStatus) (deployResult, error) {
	var r deployResult
	if d == nil || d.PowerOnAt == nil {
		return r, errors.New("bench deploy: the installed server has no deploy status: was the image written by the agent?")
	}
	for _, p := range []struct {
		name string
		at   *time.Time
	}{{"agent up", d.AgentUpAt}, {"image written", d.WrittenAt}, {"reboot from disk", d.RebootAt}, {"phone home", d.PhoneHomeAt}} {
		if p.at == nil {
			return r, fmt.Errorf("bench deploy: the deploy status has no %q time", p.name)
		}
		r.phases = append(r.phases, deployPhase{p.name, p.at.Sub(*d.PowerOnAt).Seconds()})
	}
	if d.ImageMiBPerSecond <= 0 || d.DiskLimitMiBPerSecond <= 0 {
		return r, fmt.Errorf("bench deploy: the agent reported image %.1f MiB/s and disk %.1f MiB/s", d.ImageMiBPerSecond, d.DiskLimitMiBPerSecond)
	}
	r.toAgent, r.toPhoneHome = r.phases[0].at, r.phases[3].at
	r.imageMiBs, r.diskMiBs = d.ImageMiBPerSecond, d.DiskLimitMiBPerSecond
	return r, nil
}

// waitInstalled polls the server until it is installed; attention or
// failure ends the benchmark with the reason.
func waitInstalled(ctx context.Context, c *client.Client, serial string, timeout time.Duration) (client.Server, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var last client.Server
	for {
		if a, err := c.Server(ctx, serial); err == nil {
			last = a.Value
			switch last.State {
			case serverapi.StateInstalled, serverapi.StateReady:
				return last, nil
			case "attention", "failed":
				why := ""
				if last.Attention != nil {
					why = last.Attention.Error
				}
				return last, fmt.Errorf("bench deploy: %s is %s at %s: %s", serial, last.State, last.Step, why)
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("bench deploy: %s not installed within %s (state %q, step %q)", serial, timeout, last.State, last.Step)
		case <-tick.C:
		}
	}
}

func setLegacy(ctx context.Context, vm bmcsim.ManifestEntry) error {
	m, err := hardware.Dial(ctx, hardware.Endpoint{Address: vm.Address, Username: vm.Username, Password: vm.Password, InsecureTLS: true})
	if err != nil {
		return err
	}
	defer func() { _ = m.Close(ctx) }()
	om, ok := m.(hardware.OperatorMachine)
	if !ok {
		return errors.New("the BMC session offers no boot mode")
	}
	return om.SetBootDeviceMode(ctx, hardware.BootDisk, false, false)
}

func fileDigest(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

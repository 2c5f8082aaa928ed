//go:build !agent

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/metalflow/metalflow/bmcsim"
)

// runBMCSim runs a simulated fleet of Redfish BMCs until ctx is done, for
// demos, tests and rehearsing a rack before it arrives.
func runBMCSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg bmcsim.Config
	fs := flag.NewFlagSet("bmcsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Count, "count", 1, "number of BMCs (with --ip-range, 0 means one per address)")
	fs.StringVar(&cfg.ListenIP, "listen-ip", "127.0.0.1", "address every BMC listens on, each on its own port")
	fs.IntVar(&cfg.BasePort, "base-port", 0, "port of the first BMC, the next ones follow; 0 picks free ports")
	fs.StringVar(&cfg.IPRange, "ip-range", "", "one address per BMC, e.g. 127.1.0.1-127.1.3.232 (all on --port)")
	fs.IntVar(&cfg.Port, "port", 443, "port of every BMC with --ip-range")
	fs.StringVar(&cfg.Vendor, "vendor", bmcsim.VendorGeneric, "dell, hpe, supermicro, generic or mixed")
	fs.StringVar(&cfg.Mockup, "mockup", "", "serve this DMTF mockup tree (redfish/v1/.../index.json) as every BMC's resources")
	fs.BoolVar(&cfg.RenameIDs, "mockup-rename-ids", false, "give the mockup's first System, Manager and Chassis the ID 1, which bmclib knows")
	fs.BoolVar(&cfg.InsecureHTTP, "insecure-http", false, "plain HTTP instead of self-signed HTTPS")
	fs.StringVar(&cfg.Username, "user", "", "user of every BMC (default: the vendor's usual one)")
	fs.StringVar(&cfg.Password, "password", "", "password of every BMC (default: generated per BMC)")
	fs.DurationVar(&cfg.PostDelay, "post-delay", 30*time.Second, "time from power-on until the host is On")
	fs.DurationVar(&cfg.ShutdownDelay, "shutdown-delay", 5*time.Second, "time a graceful shutdown takes")
	fs.DurationVar(&cfg.InstallDelay, "install-delay", 5*time.Minute, "time an OS install takes after netboot")
	fs.DurationVar(&cfg.TaskDuration, "task-duration", 20*time.Second, "time a task (firmware, RAID, job) runs")
	fs.DurationVar(&cfg.RebootDuration, "reboot-duration", time.Minute, "time a rebooting BMC is unreachable")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", 30*time.Minute, "idle time after which a session ends")
	fs.Float64Var(&cfg.Speed, "speed", 1, "divide every delay by this (10 = ten times faster)")
	fs.StringVar(&cfg.BootURL, "boot-url", "", "iPXE script a netbooting host fetches; ${mac}, ${mac:hexhyp}, ${serial}, ${uuid}, ${bmc} are replaced")
	fs.StringVar(&cfg.AdminAddr, "admin", "", "listen address of the admin endpoint (faults, state); empty: none")
	fs.DurationVar(&cfg.Faults.Latency, "latency", 0, "fault: added to every answer")
	fs.DurationVar(&cfg.Faults.LatencyJitter, "latency-jitter", 0, "fault: random extra latency up to this")
	fs.Float64Var(&cfg.Faults.ErrorRate, "error-rate", 0, "fault: fraction of requests answered 500/503")
	fs.IntVar(&cfg.Faults.ErrorStatus, "error-status", 0, "fault: 500, 503 or 429 (0: 500 or 503)")
	fs.IntVar(&cfg.Faults.RetryAfter, "retry-after", 0, "fault: Retry-After seconds on injected 503/429 (0: none)")
	fs.BoolVar(&cfg.Faults.RetryAfterDate, "retry-after-date", false, "fault: send --retry-after as an HTTP-date")
	fs.BoolVar(&cfg.Faults.Hang, "hang", false, "fault: accept requests and never answer")
	fs.Float64Var(&cfg.Faults.HangRate, "hang-rate", 0, "fault: fraction of requests that hang until the client gives up")
	fs.Float64Var(&cfg.Faults.SessionDropRate, "session-drop-rate", 0, "fault: fraction of session requests on which the BMC loses every session (401 until a new login)")
	fs.Uint64Var(&cfg.Seed, "fault-seed", 0, "vary which requests the fault rates hit (same seed, same faults)")
	fs.BoolVar(&cfg.Faults.TaskException, "task-exception", false, "fault: tasks end in Exception")
	fs.Func("fault", "fault in the Redfish tree, repeatable or comma-separated: "+strings.Join(bmcsim.TreeFaultNames(), ", "), func(v string) error {
		names, err := bmcsim.ParseTreeFaults(v)
		if err != nil {
			return err
		}
		for _, n := range names {
			if !slices.Contains(cfg.Faults.Tree, n) {
				cfg.Faults.Tree = append(cfg.Faults.Tree, n)
			}
		}
		return nil
	})
	manifest := fs.String("manifest", "", "write the fleet manifest (JSON, with passwords) to this file; - for stdout")
	var q bmcsim.QEMUConfig
	useQEMU := fs.Bool("qemu", false, "put a real qemu VM behind the BMCs (see --qemu-*), instead of a simulated host")
	fs.IntVar(&q.Hosts, "qemu-hosts", 0, "with --qemu: how many BMCs, the first ones, get a VM; 0 means all")
	fs.StringVar(&q.Accel, "qemu-accel", "auto", "with --qemu: auto (KVM if a probe VM runs under it, else TCG), kvm or tcg")
	fs.IntVar(&q.MemoryMiB, "qemu-memory", 1024, "with --qemu: MiB of memory per VM")
	fs.IntVar(&q.CPUs, "qemu-cpus", 1, "with --qemu: vCPUs per VM")
	fs.StringVar(&q.CPUModel, "qemu-cpu", "max", "with --qemu under TCG: the emulated CPU model (qemu -cpu); KVM always runs the host's")
	diskGiB := fs.Int64("qemu-disk-gib", 8, "with --qemu: each VM's sparse disk, in GiB")
	fs.StringVar(&q.DiskFormat, "qemu-disk-format", "qcow2", "with --qemu: qcow2 or raw")
	fs.StringVar(&q.Dir, "qemu-dir", "", "with --qemu: directory for the VMs' disks, firmware variables and serial logs (default: temporary)")
	fs.BoolVar(&q.KeepDisks, "qemu-keep-disks", false, "with --qemu: keep the VMs' directories on exit, to boot the same disks next time")
	fs.StringVar(&q.NIC, "qemu-nic", "virtio-net-pci", "with --qemu: virtio-net-pci or e1000")
	fs.StringVar(&q.Network, "qemu-network", "user", "with --qemu: user (qemu's own NAT, --boot-url offered as boot file), tap (on --qemu-bridge) or none")
	fs.StringVar(&q.Bridge, "qemu-bridge", "", "with --qemu-network tap: the bridge each VM's tap joins")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *useQEMU {
		if q.Network == "tap" && q.Bridge == "" {
			return fmt.Errorf("--qemu-network tap needs --qemu-bridge")
		}
		q.DiskBytes = *diskGiB << 30
		q.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
		cfg.QEMU = &q
	}
	if cfg.Mockup != "" && !isFlagSet(fs, "vendor") {
		cfg.Vendor = "" // the tree says which vendor it is
	}
	if cfg.IPRange != "" && !isFlagSet(fs, "count") {
		cfg.Count = 0
	}

	fleet, err := bmcsim.Start(cfg)
	if err != nil {
		return err
	}
	defer fleet.Close()

	switch *manifest {
	case "":
	case "-":
		if err := fleet.WriteManifest(stdout); err != nil {
			return err
		}
	default:
		if err := writeManifestFile(*manifest, fleet); err != nil {
			return err
		}
	}
	bmcs := fleet.BMCs()
	fmt.Fprintf(stderr, "bmcsim: %d BMCs up, %s .. %s", len(bmcs), bmcs[0].Address(), bmcs[len(bmcs)-1].Address())
	if a := fleet.AdminAddress(); a != "" {
		fmt.Fprintf(stderr, "; admin on http://%s", a)
	}
	fmt.Fprintln(stderr)
	<-ctx.Done()
	return nil
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// writeManifestFile keeps the passwords it holds readable by the owner only.
func writeManifestFile(path string, fleet *bmcsim.Fleet) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := fleet.WriteManifest(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

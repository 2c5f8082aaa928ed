// Package agent is the deploy agent: `metalflow agent` runs it from the
// agent initramfs on the server being installed. It reports the machine's
// inventory, fetches its plan, picks the disk by root device hints, streams
// the image onto it (raw, gzip, zstd or qcow2, checked against its SHA-256,
// never stored), writes a NoCloud seed partition for the installed OS's
// first boot, and reports the result. The conversation with the boot
// service is agentapi's.
package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// Config is what the agent needs; cmd/metalflow reads it from the kernel
// command line.
type Config struct {
	// URL is the boot service's base URL (metalflow.url).
	URL string
	// Token is the install attempt's token (metalflow.token).
	Token string
	// SysDir, ProcDir and DevDir are where sysfs, procfs and the device
	// nodes are; empty means /sys, /proc and /dev.
	SysDir, ProcDir, DevDir string
	// ProgressEvery is how often progress is reported; default 5s.
	ProgressEvery time.Duration
	// Retries bounds consecutive failed attempts of one request (image
	// fetches, reports) before giving up; default 8.
	Retries int
	// RetryBackoff is the first wait between attempts, doubling each time
	// up to 30s; default 1s.
	RetryBackoff time.Duration
	// StallTimeout is how long the image download may go without a byte
	// before the agent drops the connection and resumes; default 60s.
	StallTimeout time.Duration
	// HTTPClient talks to the boot service and the image server; default
	// one without an overall timeout (images are large), with dial and
	// header timeouts.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// CPUProfile, when set, receives a pprof CPU profile of the attempt:
	// where an agent's time goes is only seen on the slow machine itself.
	CPUProfile io.Writer
}

func (c Config) withDefaults() Config {
	if c.SysDir == "" {
		c.SysDir = "/sys"
	}
	if c.ProcDir == "" {
		c.ProcDir = "/proc"
	}
	if c.DevDir == "" {
		c.DevDir = "/dev"
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 5 * time.Second
	}
	if c.Retries <= 0 {
		c.Retries = 8
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = time.Second
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		}}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Run is one install attempt, from the inventory to the result. It returns
// an error when the install failed (after reporting it) or when it could
// not be reported at all.
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	started := time.Now()
	api := &apiClient{base: cfg.URL, token: cfg.Token, client: cfg.HTTPClient, retries: cfg.Retries, backoff: cfg.RetryBackoff, log: cfg.Logger}
	prog := &progress{}
	a := &agent{cfg: cfg, api: api, prog: prog}

	var res agentapi.Result
	inv, disks, err := readInventory(cfg.SysDir, cfg.ProcDir, cfg.DevDir)
	if err != nil {
		res = failed(res, fail(agentapi.ClassInternal, "inventory: %v", err))
	} else {
		cfg.Logger.Info("inventory", "cpus", inv.CPU.Count, "memory", inv.MemoryBytes, "disks", len(inv.Disks), "nics", len(inv.NICs), "boot_seconds", inv.BootSeconds)
		if err := api.post(ctx, agentapi.PathInventory, inv); err != nil {
			return fmt.Errorf("report inventory: %w", err)
		}
		prog.set(func(p *progressState) { p.Phase = agentapi.PhasePlan })
		plan, err := api.plan(ctx)
		if err != nil {
			return fmt.Errorf("fetch plan: %w", err)
		}
		reporting, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { a.reportProgress(reporting) })
		res = a.install(ctx, plan, disks)
		stop()
		wg.Wait()
	}
	res.Stats.TotalSeconds = time.Since(started).Seconds()
	if res.Succeeded {
		cfg.Logger.Info("install succeeded", "disk", res.Disk.Name, "image_mib_s", res.Stats.ImageMiBps, "disk_mib_s", res.Stats.DiskMiBps)
	} else {
		cfg.Logger.Error("install failed", "class", res.Class, "reason", res.Reason, "disk_wiped", res.DiskWiped)
	}
	if err := api.post(context.WithoutCancel(ctx), agentapi.PathResult, res); err != nil {
		return fmt.Errorf("report result: %w", err)
	}
	if !res.Succeeded {
		return fmt.Errorf("install failed (%s): %s", res.Class, res.Reason)
	}
	return nil
}

type agent struct {
	cfg  Config
	api  *apiClient
	prog *progress
}

func failed(res agentapi.Result, err error) agentapi.Result {
	res.Succeeded = false
	res.Class = classOf(err)
	res.Reason = err.Error()
	return res
}

// install does the plan. Until the disk is wiped, a failure leaves it as
// it was; after, a failure wipes its signatures again so that a half
// written image can never boot as if installed.
func (a *agent) install(ctx context.Context, plan agentapi.Plan, disks []blockDevice) agentapi.Result {
	var res agentapi.Result
	mac := plan.Seed.MAC
	if mac == "" {
		mac = routeMAC(a.cfg.URL)
	}
	files, err := seedFiles(plan.Seed, mac)
	if err != nil {
		return failed(res, err)
	}
	src := &source{
		client: a.cfg.HTTPClient, url: plan.Image.URL, retries: a.cfg.Retries, backoff: a.cfg.RetryBackoff, stall: a.cfg.StallTimeout, log: a.cfg.Logger,
		notify: func(msg string) { a.prog.set(func(p *progressState) { p.Message = msg }) },
	}
	im, err := probeImage(ctx, src, plan.Image)
	if err != nil {
		return failed(res, err)
	}
	disk, err := chooseDisk(disks, plan.RootDevice, im.size+seedReserve)
	if err != nil {
		return failed(res, err)
	}
	res.Disk = &disk.Disk
	a.cfg.Logger.Info("disk chosen", "disk", disk.Name, "size", disk.Size, "serial", disk.Serial, "by_path", disk.ByPath, "image_size", im.size)
	t, err := openTarget(disk.Path)
	if err != nil {
		return failed(res, err)
	}
	defer t.close()
	t.limit = t.size - seedReserve
	if im.size > t.limit {
		return failed(res, fail(agentapi.ClassDiskTooSmall, "%s has %d bytes; the image needs %d and the seed partition %d", disk.Name, t.size, im.size, seedReserve))
	}
	a.prog.set(func(p *progressState) {
		p.Phase, p.Disk, p.BytesTotal = agentapi.PhaseWipe, disk.Name, im.size
		p.written, p.downloaded = &t.written, &src.downloaded
	})
	if err := t.wipeSignatures(disk.Partitions); err != nil {
		return failed(res, err)
	}
	var written int64
	err = func() error {
		if plan.DiskBenchmarkMiB > 0 {
			a.prog.set(func(p *progressState) { p.Phase = agentapi.PhaseBenchmark })
			n := min(int64(plan.DiskBenchmarkMiB)*mib, t.limit)
			begin := time.Now()
			if err := t.benchmark(n); err != nil {
				return err
			}
			res.Stats.DiskMiBps = float64(n) / mib / time.Since(begin).Seconds()
		}
		a.prog.set(func(p *progressState) { p.Phase = agentapi.PhaseWrite })
		begin := time.Now()
		written, err = im.write(ctx, t)
		if err != nil {
			return err
		}
		if err := t.sync(); err != nil {
			return err
		}
		res.Stats.WriteSeconds = time.Since(begin).Seconds()
		res.Stats.ImageBytes = written
		res.Stats.ImageMiBps = float64(written) / mib / res.Stats.WriteSeconds
		a.prog.set(func(p *progressState) { p.Phase = agentapi.PhaseSeed })
		// A qcow2 image's unallocated tail is zeros the seed must not cover.
		return writeSeed(t, max(written, im.size), files)
	}()
	res.Stats.DownloadedBytes = src.downloaded.Load()
	res.Stats.Resumes = int(src.resumes.Load())
	if err != nil {
		res = failed(res, err)
		end := max(written, im.size)
		res.DiskWiped = t.wipeSignatures(nil, extent{end - mib, mib}) == nil
		return res
	}
	res.Succeeded = true
	return res
}

// routeMAC is the MAC of the NIC the agent reaches the boot service
// through: the one the installed OS should bring up with DHCP, as it is on
// the provisioning network. Empty when it cannot be told.
func routeMAC(baseURL string) string {
	u, err := url.Parse(baseURL)
	if err != nil {
		return ""
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	// Connecting a UDP socket sends nothing; it only picks the route.
	conn, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return ""
	}
	local := conn.LocalAddr().(*net.UDPAddr).IP
	conn.Close()
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs()
		for _, addr := range addrs {
			if ipn, ok := addr.(*net.IPNet); ok && ipn.IP.Equal(local) && len(ifc.HardwareAddr) > 0 {
				return ifc.HardwareAddr.String()
			}
		}
	}
	return ""
}

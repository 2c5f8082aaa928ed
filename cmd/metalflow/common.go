//go:build !agent

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/term"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/api/images"
	"github.com/metalflow/metalflow/cloud"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/internal/stack"
	"github.com/metalflow/metalflow/workers"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// logFlags are shared by every long-running subcommand.
type logFlags struct {
	level  string
	format string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&l.format, "log-format", "auto", "log format: text for people, json for collectors, or auto (text on a terminal, json otherwise)")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level: %w", err)}
	}
	opts := &slog.HandlerOptions{Level: level}
	format := l.format
	if format == "" || format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: want auto, text or json", l.format)}
}

// isTerminal says whether w is a terminal someone reads, rather than a
// file or a pipe a log collector reads.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// temporalFlags locate an external Temporal.
type temporalFlags struct {
	hostPort  string
	namespace string
}

func (t *temporalFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.hostPort, "temporal", "127.0.0.1:7233", "Temporal frontend host:port")
	fs.StringVar(&t.namespace, "namespace", "default", "Temporal namespace")
}

// serveMetrics serves /metrics and /healthz for processes without the API.
func serveMetrics(ctx context.Context, log *slog.Logger, addr string, reg *prometheus.Registry) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// bootFlags configure the boot service netbooting servers talk to.
type bootFlags struct {
	publicURL   string
	kernelURL   string
	initrdURL   string
	kernelArgs  string
	agentKernel string
	agentInitrd string
	diskBench   int
}

func (b *bootFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&b.publicURL, "public-url", "", "URL servers on the provisioning network reach this API at (default: http://<--http>)")
	fs.StringVar(&b.kernelURL, "installer-kernel-url", "", "installer kernel for netboot; empty serves a placeholder only simulated hosts can boot")
	fs.StringVar(&b.initrdURL, "installer-initrd-url", "", "installer initrd for netboot; empty serves a placeholder")
	fs.StringVar(&b.kernelArgs, "installer-kernel-args", "", "extra installer kernel arguments")
	fs.StringVar(&b.agentKernel, "agent-kernel", "", "deploy agent kernel, a file served at /boot/agent/vmlinuz or a URL; empty refuses installs that name an image")
	fs.StringVar(&b.agentInitrd, "agent-initrd", "", "deploy agent initramfs, a file served at /boot/agent/initrd.img or a URL")
	fs.Func("agent-disk-benchmark-mib", "have each deploy agent first write this many MiB of zeros to its disk and report the disk's own write rate next to the image's (default 0: off)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1<<16 {
			return fmt.Errorf("want a number of MiB from 0 (off) to 65536, got %q", v)
		}
		b.diskBench = n
		return nil
	})
}

func (b *bootFlags) config(httpAddr string) api.BootConfig {
	public := b.publicURL
	if public == "" {
		public = stack.HTTPURL(httpAddr)
	}
	return api.BootConfig{PublicURL: public, KernelURL: b.kernelURL, InitrdURL: b.initrdURL, KernelArgs: b.kernelArgs,
		AgentKernel: b.agentKernel, AgentInitrd: b.agentInitrd, AgentDiskBenchmarkMiB: b.diskBench}
}

// imageFlags configure the OS image catalog: where uploads are kept, how
// large one may be, and who may fetch image bytes.
type imageFlags struct {
	dir    string
	maxMiB int64
	open   bool
}

func (i *imageFlags) register(fs *flag.FlagSet, dirDefault, dirHelp string) {
	fs.StringVar(&i.dir, "images-dir", dirDefault, dirHelp)
	fs.Int64Var(&i.maxMiB, "image-max-mib", images.DefaultMaxUploadBytes>>20, "largest image upload, in MiB")
	fs.BoolVar(&i.open, "open-images", false, "serve image bytes under /boot/images/ to anyone who reaches the boot service, without a pending install's token")
}

func (i *imageFlags) config() (api.ImagesConfig, error) {
	if i.maxMiB <= 0 {
		return api.ImagesConfig{}, usageError{fmt.Errorf("--image-max-mib must be positive, got %d", i.maxMiB)}
	}
	return api.ImagesConfig{Dir: i.dir, MaxUploadBytes: i.maxMiB << 20, Open: i.open}, nil
}

// bmcAllowLoopbackHelp is --bmc-allow-loopback's, on the roles that take
// BMC addresses (api, dev).
const bmcAllowLoopbackHelp = "accept BMC addresses on loopback (127.0.0.0/8, ::1): a simulated fleet on the worker's host; link-local, multicast and unspecified ones are refused always"

// provisioningFlags configure what the lifecycle's activities need besides
// the inventory: the credential key and the hardware profiles.
type provisioningFlags struct {
	credentialsKey string
	profilesDir    string
	bmcInsecure    bool
	bmcTimeout     time.Duration
	vipPoolIntern  string
	vipPoolPublic  string
	pools          vipapi.Pools
}

func (p *provisioningFlags) register(fs *flag.FlagSet, keyDefault string, insecureDefault bool) {
	fs.StringVar(&p.credentialsKey, "credentials-key", keyDefault, "file holding the key that seals BMC credentials (created if missing); every api and worker must share it")
	fs.StringVar(&p.profilesDir, "profiles", "", "directory of hardware profile YAML files (the built-in default profile always exists)")
	fs.BoolVar(&p.bmcInsecure, "bmc-insecure", insecureDefault, "accept self-signed BMC certificates")
	fs.StringVar(&p.vipPoolIntern, "vip-pool-internal", "10.255.0.0/24", "CIDR internal VIPs get their addresses from")
	fs.StringVar(&p.vipPoolPublic, "vip-pool-public", "198.51.100.0/24", "CIDR public VIPs get their addresses from (announced externally only after approval)")
}

// registerBMC adds the flags of the roles that talk to BMCs (worker, dev).
func (p *provisioningFlags) registerBMC(fs *flag.FlagSet) {
	fs.DurationVar(&p.bmcTimeout, "bmc-request-timeout", hardware.DefaultTimeout, "how long one BMC request may take before it is given up and retried (a hung BMC)")
}

// checkBMC refuses a timeout that would give up on every request.
func (p *provisioningFlags) checkBMC() error {
	if p.bmcTimeout <= 0 {
		return usageError{fmt.Errorf("--bmc-request-timeout %s: must be positive", p.bmcTimeout)}
	}
	return nil
}

// parsePools reads the VIP address pools; a pool must be a network, not a
// host address with a prefix length.
func (p *provisioningFlags) parsePools() error {
	for _, f := range []struct {
		name, value string
		into        *netip.Prefix
	}{{"vip-pool-internal", p.vipPoolIntern, &p.pools.Internal}, {"vip-pool-public", p.vipPoolPublic, &p.pools.Public}} {
		pfx, err := netip.ParsePrefix(f.value)
		if err != nil {
			return fmt.Errorf("--%s %q: %w", f.name, f.value, err)
		}
		if pfx != pfx.Masked() {
			return fmt.Errorf("--%s %q has host bits set (did you mean %s?)", f.name, f.value, pfx.Masked())
		}
		*f.into = pfx
	}
	return nil
}

// dependencies are the lifecycle worker's, but for the inventory,
// credentials and profiles its process opens.
func (p *provisioningFlags) dependencies() workers.LifecycleDependencies {
	return workers.LifecycleDependencies{
		Dial: hardware.Dial, InsecureBMCTLS: p.bmcInsecure, BMCTimeout: p.bmcTimeout, VIPPools: p.pools,
	}
}

// cloudFlags configure the lifecycle's cloud steps. Without --ironic-url
// they are off: the steps report skipped-by-config and servers end
// installed.
type cloudFlags struct {
	ironicURL           string
	ironicInsecureBMC   bool
	siteConductorGroups bool
	novaURL             string
	novaTokenFile       string
}

// cloudHTTPTimeout bounds one request to Ironic or Nova, so a hung service
// costs a retried attempt rather than the activity's whole StartToClose.
const cloudHTTPTimeout = time.Minute

func (c *cloudFlags) register(fs *flag.FlagSet, insecureDefault bool) {
	fs.StringVar(&c.ironicURL, "ironic-url", "", "noauth OpenStack Ironic (e.g. http://127.0.0.1:6385; scripts/ironic.sh runs one) that installed servers are registered in; empty turns cloud registration off")
	fs.BoolVar(&c.ironicInsecureBMC, "ironic-insecure-bmc", insecureDefault, "let Ironic accept self-signed BMC certificates (redfish_verify_ca=false)")
	fs.BoolVar(&c.siteConductorGroups, "ironic-site-conductor-groups", false, "pin each node to the Ironic conductor group named after its site (every site needs a conductor in that group)")
	fs.StringVar(&c.novaURL, "nova-url", "", "Nova compute endpoint (e.g. http://nova:8774/v2.1) for hypervisors' host aggregates; empty skips that step")
	fs.StringVar(&c.novaTokenFile, "nova-token-file", "", "file holding the X-Auth-Token sent to --nova-url")
}

// open connects to what is configured; nil clients mean "not configured".
func (c *cloudFlags) open(ctx context.Context) (*cloud.Ironic, *cloud.Compute, error) {
	if c.novaURL != "" && c.ironicURL == "" {
		return nil, nil, usageError{errors.New("--nova-url needs --ironic-url: only registered servers join aggregates")}
	}
	if c.ironicURL == "" {
		return nil, nil, nil
	}
	httpClient := &http.Client{Timeout: cloudHTTPTimeout}
	ironic, err := cloud.NewIronic(ctx, cloud.IronicOptions{URL: c.ironicURL, HTTPClient: httpClient})
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--ironic-url: %w", err)}
	}
	if c.novaURL == "" {
		return ironic, nil, nil
	}
	token := ""
	if c.novaTokenFile != "" {
		b, err := os.ReadFile(c.novaTokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--nova-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	compute, err := cloud.NewCompute(ctx, cloud.ComputeOptions{URL: c.novaURL, Token: token, HTTPClient: httpClient})
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--nova-url: %w", err)}
	}
	return ironic, compute, nil
}

// apply adds the cloud clients to the worker's dependencies.
func (c *cloudFlags) apply(deps *workers.LifecycleDependencies, ironic *cloud.Ironic, compute *cloud.Compute) {
	deps.Ironic, deps.Compute = ironic, compute
	deps.IronicInsecureBMC, deps.SiteConductorGroups = c.ironicInsecureBMC, c.siteConductorGroups
}

// logCloud says at start whether installed servers go on to the cloud.
func (c *cloudFlags) logCloud(log *slog.Logger) {
	if c.ironicURL == "" {
		log.Warn("cloud registration is off: no --ironic-url; RegisterCloud, JoinAggregate and AssignTenant are skipped and servers end installed")
		return
	}
	nova := c.novaURL
	if nova == "" {
		nova = "none (hypervisors' JoinAggregate is skipped)"
	}
	log.Info("cloud registration is on", "ironic", c.ironicURL, "nova", nova,
		"insecureBMC", c.ironicInsecureBMC, "siteConductorGroups", c.siteConductorGroups)
}

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
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/internal/stack"
	"github.com/metalflow/metalflow/inventory"
)

type devFlags struct {
	log            logFlags
	dataDir        string
	ephemeral      bool
	openSD         bool
	rateLimit      float64
	temporalListen string
	temporalUI     string
	httpAddr       string
	namespace      string
	workers        bool
	temporalLog    string
	layoutFile     string
	boot           bootFlags
	images         imageFlags
	netboot        netbootFlags
	prov           provisioningFlags
	cloud          cloudFlags
	simServers     int
	simQEMU        int
	simManifest    string
	simVendor      string
	simSpeed       float64
	simAdmin       string
	// allowLoopbackBMC is on by itself with a simulated fleet (stack).
	allowLoopbackBMC bool
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f devFlags
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.log.register(fs)
	fs.StringVar(&f.dataDir, "data", ".metalflow", "directory for persistent state (Temporal's SQLite database)")
	fs.BoolVar(&f.ephemeral, "ephemeral", false, "keep all state in memory; it is lost on exit")
	fs.StringVar(&f.temporalListen, "temporal-listen", "127.0.0.1:7233", "Temporal frontend (gRPC) listen address, for the temporal CLI and separate workers")
	fs.StringVar(&f.temporalUI, "temporal-ui", "127.0.0.1:8233", "Temporal Web UI listen address; empty disables it")
	fs.StringVar(&f.httpAddr, "http", "127.0.0.1:8080", "API, operator UI and /metrics listen address")
	fs.Float64Var(&f.rateLimit, "rate-limit", 100, "requests per second each client address may make (bursts of twice that); 0 turns the limit off")
	fs.BoolVar(&f.openSD, "open-service-discovery", false, "serve /api/v1/sd/targets without a token, for Prometheus servers that cannot send one")
	fs.StringVar(&f.namespace, "namespace", "default", "Temporal namespace, created at start")
	fs.BoolVar(&f.workers, "workers", true, "run the lifecycle worker in this process (false: run 'metalflow worker' separately)")
	fs.StringVar(&f.temporalLog, "temporal-log-level", "warn", "log level of the embedded Temporal server")
	f.boot.register(fs)
	f.images.register(fs, "", "directory uploaded OS images are kept in (default: images/ in --data)")
	f.netboot.register(fs, "")
	f.prov.register(fs, "", true)
	f.prov.registerBMC(fs)
	f.cloud.register(fs, true)
	fs.IntVar(&f.simServers, "sim-servers", 0, "start this many simulated servers (Redfish BMCs and the hosts behind them), netbooting from this API")
	fs.IntVar(&f.simQEMU, "sim-qemu", 0, "start this many simulated BMCs with a real qemu VM behind each (qemu's own NAT: the VMs reach this API at 10.0.2.2, the default --public-url then)")
	fs.StringVar(&f.simManifest, "sim-manifest", "", "write the simulated fleet's manifest (addresses, credentials, serials, MACs) to this JSON file")
	fs.StringVar(&f.simVendor, "sim-vendor", "mixed", "vendor of the simulated BMCs: dell, hpe, supermicro, generic or mixed")
	fs.StringVar(&f.simAdmin, "sim-admin", "", "listen address of the simulated fleet's admin endpoint (state, counters, fault injection); empty disables it")
	fs.Float64Var(&f.simSpeed, "sim-speed", 10, "how much faster than real hardware the simulated servers POST and install")
	fs.StringVar(&f.layoutFile, "layout", "", "YAML file of sites and racks to load into the inventory (dc1/R01-R20 are always seeded)")
	fs.BoolVar(&f.allowLoopbackBMC, "bmc-allow-loopback", false, bmcAllowLoopbackHelp+" (on by itself with --sim-servers or --sim-qemu)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := f.qemuPublicURL(); err != nil {
		return err
	}
	if err := f.prov.checkBMC(); err != nil {
		return err
	}
	imagesCfg, err := f.images.config()
	if err != nil {
		return err
	}
	log, err := f.log.logger(stderr)
	if err != nil {
		return err
	}
	var temporalLevel slog.Level
	if err := temporalLevel.UnmarshalText([]byte(f.temporalLog)); err != nil {
		return usageError{fmt.Errorf("--temporal-log-level: %w", err)}
	}
	if err := f.prov.parsePools(); err != nil {
		return err
	}
	netboot, err := f.netboot.config()
	if err != nil {
		return err
	}
	ironic, compute, err := f.cloud.open(ctx)
	if err != nil {
		return err
	}
	f.cloud.logCloud(log)

	cfg := stack.Config{
		Log: log,
		Temporal: stack.TemporalConfig{
			Store: stack.TemporalSQLite, Address: f.temporalListen, UIAddress: f.temporalUI,
			Namespace: f.namespace, LogLevel: temporalLevel,
		},
		LayoutFile:     f.layoutFile,
		Layouts:        []inventory.Layout{inventory.DevLayout()},
		CredentialsKey: f.prov.credentialsKey,
		ProfilesDir:    f.prov.profilesDir,
		API: stack.APIConfig{
			Address: f.httpAddr, Boot: f.boot.config(f.httpAddr),
			RateLimit: f.rateLimit, OpenServiceDiscovery: f.openSD, Images: imagesCfg,
			AllowLoopbackBMC: f.allowLoopbackBMC,
		},
	}
	dbFile := ""
	if f.ephemeral {
		cfg.Temporal.Store = stack.TemporalInMemory
	} else {
		cfg.DataDir = f.dataDir
		dbFile = filepath.Join(f.dataDir, "temporal.db")
	}
	if f.workers {
		deps := f.prov.dependencies()
		f.cloud.apply(&deps, ironic, compute)
		cfg.Worker = &deps
	}
	if netboot.DHCP != nil || netboot.TFTPAddress != "" {
		cfg.Netboot = &netboot
	}
	if f.simServers > 0 || f.simQEMU > 0 {
		cfg.Fleet = &stack.FleetConfig{
			Servers: f.simServers + f.simQEMU, Vendor: f.simVendor, Speed: f.simSpeed,
			AdminAddress: f.simAdmin, ManifestPath: f.simManifest,
		}
		if f.simQEMU > 0 {
			cfg.Fleet.QEMU = &bmcsim.QEMUConfig{Hosts: f.simQEMU, Network: "user",
				Logf: func(format string, a ...any) { log.Info(fmt.Sprintf(format, a...), "component", "bmcsim") }}
		}
	}
	st, err := stack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("temporal server started", "frontend", st.TemporalAddress, "webUI", st.TemporalUIURL, "database", dbFileOrMemory(dbFile))
	log.Info("metalflow dev is up",
		"operatorUI", stack.HTTPURL(f.httpAddr), "temporalUI", st.TemporalUIURL,
		"metrics", stack.HTTPURL(f.httpAddr)+"/metrics", "temporal", st.TemporalAddress)
	if !f.workers {
		// A worker on another inventory or key fails every server: say
		// exactly which files this one is.
		log.Info("no lifecycle worker runs here; start one on this inventory and key", "command", workerCommand(st, f.namespace))
	}
	if isTerminal(stdout) {
		printBanner(stdout, f, st, dbFile)
	}
	err = st.Wait(ctx)
	log.Info("metalflow dev stopped")
	return err
}

func dbFileOrMemory(f string) string {
	if f == "" {
		return "in memory (--ephemeral)"
	}
	return f
}

// qemuPublicURL points the boot service's URLs at 10.0.2.2, where VMs on
// qemu's own NAT reach the host, unless told otherwise. Simulated hosts
// run on the host and cannot reach that address, so a fleet of both needs
// a --public-url both can.
func (f *devFlags) qemuPublicURL() error {
	if f.simQEMU <= 0 || f.boot.publicURL != "" {
		return nil
	}
	if f.simServers > 0 {
		return usageError{errors.New("--sim-qemu with --sim-servers needs a --public-url that both the VMs and the simulated hosts reach")}
	}
	_, port, err := net.SplitHostPort(f.httpAddr)
	if err != nil {
		return usageError{fmt.Errorf("--http %q: %w", f.httpAddr, err)}
	}
	f.boot.publicURL = "http://10.0.2.2:" + port
	return nil
}

// workerCommand is the command line of a worker that shares st's Temporal,
// inventory and credential key.
func workerCommand(st *stack.Stack, namespace string) string {
	args := []string{"metalflow", "worker", "--temporal", st.TemporalAddress}
	if namespace != "default" {
		args = append(args, "--namespace", namespace)
	}
	// Absolute: the command works from any directory.
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	args = append(args, "--inventory-db", shellQuote(abs(st.InventoryURL)), "--credentials-key", shellQuote(abs(st.CredentialsKey)))
	return strings.Join(args, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == ':' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printBanner tells a person at a terminal where everything is, once, above
// the logs; a service manager or a pipe gets the log lines only.
func printBanner(w io.Writer, f devFlags, st *stack.Stack, dbFile string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nmetalflow dev is up")
	fmt.Fprintf(tw, "  operator UI\t%s\n", stack.HTTPURL(f.httpAddr))
	if st.TemporalUIURL != "" {
		fmt.Fprintf(tw, "  Temporal UI\t%s\n", st.TemporalUIURL)
	}
	fmt.Fprintf(tw, "  Temporal\t%s (namespace %s)\n", st.TemporalAddress, f.namespace)
	fmt.Fprintf(tw, "  state\t%s\n", dbFileOrMemory(dbFile))
	fmt.Fprintf(tw, "  API token\tthe \"admin token\" line below, on the first start only\n")
	if !f.workers {
		fmt.Fprintf(tw, "  worker\t%s\n", workerCommand(st, f.namespace))
	}
	fmt.Fprintln(tw, "  stop\tCtrl-C")
	_ = tw.Flush()
	fmt.Fprintln(w)
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/internal/devserver"
	"github.com/metalflow/metalflow/internal/telemetry"
	"github.com/metalflow/metalflow/internal/temporalx"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows"
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
	prov           provisioningFlags
	cloud          cloudFlags
	simServers     int
	simManifest    string
	simVendor      string
	simSpeed       float64
	simAdmin       string
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
	f.prov.register(fs, "", true)
	f.prov.registerBMC(fs)
	f.cloud.register(fs, true)
	fs.IntVar(&f.simServers, "sim-servers", 0, "start this many simulated servers (Redfish BMCs and the hosts behind them), netbooting from this API")
	fs.StringVar(&f.simManifest, "sim-manifest", "", "write the simulated fleet's manifest (addresses, credentials, serials, MACs) to this JSON file")
	fs.StringVar(&f.simVendor, "sim-vendor", "mixed", "vendor of the simulated BMCs: dell, hpe, supermicro, generic or mixed")
	fs.StringVar(&f.simAdmin, "sim-admin", "", "listen address of the simulated fleet's admin endpoint (state, counters, fault injection); empty disables it")
	fs.Float64Var(&f.simSpeed, "sim-speed", 10, "how much faster than real hardware the simulated servers POST and install")
	fs.StringVar(&f.layoutFile, "layout", "", "YAML file of sites and racks to load into the inventory (dc1/R01-R20 are always seeded)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := f.prov.checkBMC(); err != nil {
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

	dbFile, inventoryFile := "", ""
	if f.ephemeral {
		// The CMDB is SQLite too; an in-memory run keeps it in a temporary
		// file that goes away on exit.
		tmp, err := os.MkdirTemp("", "metalflow-dev-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		inventoryFile = filepath.Join(tmp, "metalflow.db")
	} else {
		if err := os.MkdirAll(f.dataDir, 0o750); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		dbFile = filepath.Join(f.dataDir, "temporal.db")
		inventoryFile = filepath.Join(f.dataDir, "metalflow.db")
	}
	inv, err := openInventory(ctx, log, inventoryFile, f.layoutFile)
	if err != nil {
		return err
	}
	defer inv.Close()
	if err := inv.ApplyLayout(ctx, inventory.DevLayout()); err != nil {
		return fmt.Errorf("seed inventory: %w", err)
	}
	if f.prov.credentialsKey == "" && !f.ephemeral {
		f.prov.credentialsKey = filepath.Join(f.dataDir, "credentials.key")
	}
	vault, catalog, err := f.prov.open(inv)
	if err != nil {
		return err
	}
	ironic, compute, err := f.cloud.open(ctx)
	if err != nil {
		return err
	}
	f.cloud.logCloud(log)
	// Bind the API before the simulated fleet takes its many ephemeral
	// ports, so none of them can land on the API's address.
	apiListener, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("API listen on %s: %w", f.httpAddr, err)
	}
	defer apiListener.Close()
	srv, err := devserver.Start(devserver.Options{
		DatabaseFile:     dbFile,
		FrontendAddress:  f.temporalListen,
		UIAddress:        f.temporalUI,
		Namespace:        f.namespace,
		SearchAttributes: workflows.SearchAttributes(),
		Logger:           log,
		LogLevel:         temporalLevel,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := srv.Stop(); err != nil {
			log.Warn("temporal server stop", "error", err)
		}
	}()
	uiURL := ""
	if f.temporalUI != "" {
		uiURL = httpURL(f.temporalUI)
	}
	log.Info("temporal server started", "frontend", srv.FrontendAddress(), "webUI", uiURL, "database", dbFileOrMemory(dbFile))
	if f.simServers > 0 {
		fleet, err := startSimFleet(log, simFleetOptions{
			count: f.simServers, vendor: f.simVendor, speed: f.simSpeed, adminAddr: f.simAdmin,
			publicURL: f.boot.config(f.httpAddr).PublicURL, manifestPath: f.simManifest,
		})
		if err != nil {
			return err
		}
		defer fleet.Close()
	}

	reg := telemetry.NewRegistry()
	c, metrics, err := newTemporalClient(log, reg, temporalFlags{hostPort: srv.FrontendAddress(), namespace: f.namespace})
	if err != nil {
		return err
	}
	defer func() { _ = metrics.Close() }()
	defer c.Close()
	if err := temporalx.WaitReady(ctx, c); err != nil {
		return err
	}
	// A database created by an older metalflow may lack newer attributes.
	if err := temporalx.EnsureSearchAttributes(ctx, c, f.namespace, workflows.SearchAttributes()); err != nil {
		return err
	}

	// Each role runs until ctx ends; the first to fail stops the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	start := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	if f.workers {
		deps := f.prov.dependencies(inv, vault, catalog)
		f.cloud.apply(&deps, ironic, compute)
		start("worker", func() error {
			return runLifecycleWorker(ctx, log, c, f.namespace, deps)
		})
	}
	start("api", func() error {
		return serveAPIOn(ctx, log, apiListener, api.Config{
			Temporal:      c,
			Inventory:     inv,
			Credentials:   vault,
			Profiles:      catalog,
			Registry:      reg,
			Logger:        log,
			TemporalUIURL: uiURL,
			Namespace:     f.namespace,
			Boot:          f.boot.config(f.httpAddr),

			OpenServiceDiscovery: f.openSD,
			RateLimit:            f.rateLimit,
		})
	})
	log.Info("metalflow dev is up",
		"operatorUI", httpURL(f.httpAddr), "temporalUI", uiURL,
		"metrics", httpURL(f.httpAddr)+"/metrics", "temporal", srv.FrontendAddress())
	<-ctx.Done()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	log.Info("metalflow dev stopped")
	return errors.Join(all...)
}

func dbFileOrMemory(f string) string {
	if f == "" {
		return "in memory (--ephemeral)"
	}
	return f
}

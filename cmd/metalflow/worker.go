package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"

	"github.com/metalflow/metalflow/internal/telemetry"
)

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		lf          logFlags
		tf          temporalFlags
		metricsAddr string
	)
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lf.register(fs)
	tf.register(fs)
	var inventoryURL, layoutFile string
	fs.StringVar(&inventoryURL, "inventory-db", "metalflow.db", "inventory database: postgres://… or a SQLite file path")
	fs.StringVar(&layoutFile, "layout", "", "YAML file of sites and racks to load into the inventory at start")
	var pf provisioningFlags
	pf.register(fs, "credentials.key", false)
	var cf cloudFlags
	cf.register(fs, false)
	fs.StringVar(&metricsAddr, "metrics", "127.0.0.1:9090", "listen address for /metrics and /healthz; empty disables them")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	inv, err := openInventory(ctx, log, inventoryURL, layoutFile)
	if err != nil {
		return err
	}
	defer inv.Close()
	vault, catalog, err := pf.open(inv)
	if err != nil {
		return err
	}
	ironic, compute, err := cf.open(ctx)
	if err != nil {
		return err
	}
	cf.logCloud(log)
	deps := pf.dependencies(inv, vault, catalog)
	cf.apply(&deps, ironic, compute)
	reg := telemetry.NewRegistry()
	c, metrics, err := newTemporalClient(log, reg, tf)
	if err != nil {
		return err
	}
	defer func() { _ = metrics.Close() }()
	defer c.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(name string, err error) {
		if err == nil {
			return
		}
		mu.Lock()
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
		mu.Unlock()
		cancel()
	}
	if metricsAddr != "" {
		wg.Add(1)
		go func() { defer wg.Done(); fail("metrics", serveMetrics(ctx, log, metricsAddr, reg)) }()
	}
	fail("worker", runLifecycleWorker(ctx, log, c, tf.namespace, deps))
	cancel()
	wg.Wait()
	return errors.Join(errs...)
}

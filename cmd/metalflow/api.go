package main

import (
	"context"
	"flag"
	"io"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/internal/telemetry"
)

func runAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		lf       logFlags
		tf       temporalFlags
		httpAddr string
		uiURL    string
	)
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lf.register(fs)
	tf.register(fs)
	var inventoryURL, layoutFile string
	fs.StringVar(&inventoryURL, "inventory-db", "metalflow.db", "inventory database: postgres://… or a SQLite file path")
	fs.StringVar(&layoutFile, "layout", "", "YAML file of sites and racks to load into the inventory at start")
	fs.StringVar(&httpAddr, "http", "127.0.0.1:8080", "API, operator UI and /metrics listen address")
	var pf provisioningFlags
	pf.register(fs, "credentials.key", false)
	var bf bootFlags
	bf.register(fs)
	fs.StringVar(&uiURL, "temporal-ui-url", "", "public URL of the Temporal Web UI, for links in answers and the operator UI")
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
	reg := telemetry.NewRegistry()
	c, metrics, err := newTemporalClient(log, reg, tf)
	if err != nil {
		return err
	}
	defer func() { _ = metrics.Close() }()
	defer c.Close()
	// The client is lazy: the API starts even while Temporal is down, and
	// /readyz says so until it is reachable.
	return serveAPI(ctx, log, httpAddr, api.Config{
		Temporal:      c,
		Inventory:     inv,
		Credentials:   vault,
		Profiles:      catalog,
		Registry:      reg,
		Logger:        log,
		TemporalUIURL: uiURL,
		Namespace:     tf.namespace,
		Boot:          bf.config(httpAddr),
	})
}

//go:build !agent

package main

import (
	"context"
	"flag"
	"io"
	"time"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/internal/stack"
	"github.com/metalflow/metalflow/internal/telemetry"
)

func runAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		rf       roleFlags
		httpAddr string
		uiURL    string
	)
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rf.register(fs)
	fs.StringVar(&httpAddr, "http", "127.0.0.1:8080", "API, operator UI and /metrics listen address")
	var bf bootFlags
	bf.register(fs)
	var imf imageFlags
	imf.register(fs, "", "directory uploaded OS images are kept in; every api process must share it (default: images/ in --data)")
	rateLimit := fs.Float64("rate-limit", 100, "requests per second each client address may make (bursts of twice that); 0 turns the limit off")
	openSD := fs.Bool("open-service-discovery", false, "serve /api/v1/sd/targets without a token, for Prometheus servers that cannot send one")
	fs.StringVar(&uiURL, "temporal-ui-url", "", "public URL of the Temporal Web UI, for links in answers and the operator UI")
	allowLoopbackBMC := fs.Bool("bmc-allow-loopback", false, bmcAllowLoopbackHelp)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	imagesCfg, err := imf.config()
	if err != nil {
		return err
	}
	env, err := rf.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer env.close()
	log := env.log
	reg := telemetry.NewRegistry()
	c, metrics, err := stack.NewTemporalClient(log, reg, rf.temporal.hostPort, rf.temporal.namespace)
	if err != nil {
		return err
	}
	defer func() { _ = metrics.Close() }()
	defer c.Close()
	// The API serves while Temporal is away: a short wait, then a warning.
	if err := env.checkBinding(ctx, c, rf.temporal.namespace, 5*time.Second); err != nil {
		return err
	}
	if imagesCfg.Dir == "" {
		if imagesCfg.Dir, err = rf.data.file("images"); err != nil {
			return err
		}
	}
	ln, err := stack.ListenAPI(httpAddr)
	if err != nil {
		return err
	}
	// The client is lazy: the API starts even while Temporal is down, and
	// /readyz says so until it is reachable.
	return stack.ServeAPI(ctx, log, ln, api.Config{
		Temporal:      c,
		Inventory:     env.inv,
		Credentials:   env.vault,
		Profiles:      env.profiles,
		Registry:      reg,
		Logger:        log,
		TemporalUIURL: uiURL,
		Namespace:     rf.temporal.namespace,
		Boot:          bf.config(httpAddr),

		OpenServiceDiscovery: *openSD,
		RateLimit:            *rateLimit,
		Images:               imagesCfg,
		BMC:                  api.BMCConfig{AllowLoopback: *allowLoopbackBMC},
	})
}

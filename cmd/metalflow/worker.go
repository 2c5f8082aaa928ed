//go:build !agent

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/metalflow/metalflow/internal/stack"
	"github.com/metalflow/metalflow/internal/telemetry"
)

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		rf          roleFlags
		metricsAddr string
	)
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rf.register(fs)
	rf.provisioning.registerBMC(fs)
	var cf cloudFlags
	cf.register(fs, false)
	fs.StringVar(&metricsAddr, "metrics", "127.0.0.1:9090", "listen address for /metrics and /healthz; empty disables them")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := rf.provisioning.checkBMC(); err != nil {
		return err
	}
	env, err := rf.open(ctx, stderr)
	if err != nil {
		return err
	}
	defer env.close()
	log := env.log
	ironic, compute, err := cf.open(ctx)
	if err != nil {
		return err
	}
	cf.logCloud(log)
	deps := rf.provisioning.dependencies()
	deps.Inventory, deps.Credentials, deps.Profiles = env.inv, env.vault, env.profiles
	cf.apply(&deps, ironic, compute)
	reg := telemetry.NewRegistry()
	c, metrics, err := stack.NewTemporalClient(log, reg, rf.temporal.hostPort, rf.temporal.namespace)
	if err != nil {
		return err
	}
	defer func() { _ = metrics.Close() }()
	defer c.Close()
	// The worker needs Temporal to do anything: it may wait for it.
	if err := env.checkBinding(ctx, c, rf.temporal.namespace, time.Minute); err != nil {
		return err
	}

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
	fail("worker", stack.RunLifecycleWorker(ctx, log, c, rf.temporal.namespace, deps))
	cancel()
	wg.Wait()
	return errors.Join(errs...)
}

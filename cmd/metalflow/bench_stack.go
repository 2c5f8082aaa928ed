package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/internal/devserver"
	"github.com/metalflow/metalflow/internal/telemetry"
	"github.com/metalflow/metalflow/internal/temporalx"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows"
)

// benchSite is the site every benchmark racks its servers in.
const benchSite = "bench"

// benchRackUnits is how many 1U servers a bench rack holds: 42U racks
// with the top two units left for switches, as in a real rack.
const benchRackUnits = 40

// benchStackOptions describe one in-process metalflow for a benchmark.
type benchStackOptions struct {
	// Servers sizes the bench site: enough racks for this many servers.
	Servers int
	// SimServers is how many simulated BMCs to start (0: none).
	SimServers int
	// SimSpeed divides real hardware delays; 0 means no delays at all, so
	// that what is measured is metalflow, not the simulated hardware.
	SimSpeed float64
	// TemporalDB is memory, sqlite or a postgres:// URL.
	TemporalDB string
	// ExternalWorker leaves the lifecycle worker to another process, which
	// dials Stack.TemporalAddress and shares InventoryURL and CredentialsKey.
	ExternalWorker bool
	Log            *slog.Logger
}

// benchStack is a running metalflow: embedded Temporal, the API on a real
// loopback port with rate limits off, the lifecycle worker and the
// simulated fleet, plus an admin token issued directly.
type benchStack struct {
	APIURL          string
	Token           string
	Temporal        client.Client
	Namespace       string
	TemporalAddress string
	InventoryURL    string
	CredentialsKey  string
	Fleet           *bmcsim.Fleet
	// HTTP keeps enough idle connections for every concurrent caller, so
	// that the benchmark measures requests, not TCP handshakes.
	HTTP *http.Client

	tmp     string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errs    chan error
	closers []func() error
}

// validateTemporalDB refuses a --temporal-db the stack cannot run on.
func validateTemporalDB(db string) error {
	switch {
	case db == "memory", db == "sqlite":
		return nil
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		u, err := url.Parse(db)
		if err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" {
			return errors.New("--temporal-db: want postgres://user:password@host:port/database")
		}
		return nil
	}
	return fmt.Errorf("--temporal-db %q: want memory, sqlite or postgres://user:password@host:port/database", db)
}

// startBenchStack brings the stack up; on error nothing is left running.
func startBenchStack(ctx context.Context, o benchStackOptions) (*benchStack, error) {
	if err := validateTemporalDB(o.TemporalDB); err != nil {
		return nil, usageError{err}
	}
	log := o.Log
	st := &benchStack{Namespace: "default", errs: make(chan error, 2), HTTP: newBenchHTTPClient()}
	up := false
	defer func() {
		if !up {
			_ = st.Close()
		}
	}()
	var err error
	if st.tmp, err = os.MkdirTemp("", "metalflow-bench-"); err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() error { return os.RemoveAll(st.tmp) })
	st.InventoryURL = filepath.Join(st.tmp, "metalflow.db")
	st.CredentialsKey = filepath.Join(st.tmp, "credentials.key")

	inv, err := openInventory(ctx, log, st.InventoryURL, "")
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, inv.Close)
	if err := inv.ApplyLayout(ctx, benchLayout(o.Servers)); err != nil {
		return nil, fmt.Errorf("bench layout: %w", err)
	}
	prov := provisioningFlags{credentialsKey: st.CredentialsKey, bmcInsecure: true,
		vipPoolIntern: "10.255.0.0/24", vipPoolPublic: "198.51.100.0/24"}
	vault, catalog, err := prov.open(inv)
	if err != nil {
		return nil, err
	}
	// Issued before the API starts, so the API's bootstrap finds a token
	// and logs none, and the benchmark holds the secret without scraping.
	tokens := &auth.Tokens{Store: inv}
	if st.Token, _, err = tokens.Issue(ctx, auth.IssueInput{Name: "bench", User: "bench", Role: auth.Admin, By: "metalflow bench"}); err != nil {
		return nil, fmt.Errorf("issue the bench token: %w", err)
	}

	apiListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() error { _ = apiListener.Close(); return nil })
	st.APIURL = "http://" + apiListener.Addr().String()
	if st.TemporalAddress, err = freeLoopbackAddr(); err != nil {
		return nil, err
	}
	devOpts := devserver.Options{
		FrontendAddress:  st.TemporalAddress,
		Namespace:        st.Namespace,
		SearchAttributes: workflows.SearchAttributes(),
		Logger:           log,
		LogLevel:         slog.LevelError,
	}
	switch o.TemporalDB {
	case "memory":
	case "sqlite":
		devOpts.DatabaseFile = filepath.Join(st.tmp, "temporal.db")
	default:
		if devOpts.PostgresURL, err = freshDatabase(o.TemporalDB); err != nil {
			return nil, err
		}
		log.Info("bench Temporal database", "url", redactURL(devOpts.PostgresURL))
	}
	srv, err := devserver.Start(devOpts)
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, srv.Stop)

	if o.SimServers > 0 {
		if st.Fleet, err = startBenchFleet(o.SimServers, o.SimSpeed, st.APIURL); err != nil {
			return nil, err
		}
		st.closers = append(st.closers, st.Fleet.Close)
	}

	reg := telemetry.NewRegistry()
	c, metrics, err := newTemporalClient(log, reg, temporalFlags{hostPort: st.TemporalAddress, namespace: st.Namespace})
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() error { c.Close(); return metrics.Close() })
	st.Temporal = c
	readyCtx, cancelReady := context.WithTimeout(ctx, time.Minute)
	defer cancelReady()
	if err := temporalx.WaitReady(readyCtx, c); err != nil {
		return nil, err
	}
	if err := temporalx.EnsureSearchAttributes(ctx, c, st.Namespace, workflows.SearchAttributes()); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	st.cancel = cancel
	start := func(name string, fn func() error) {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			if err := fn(); err != nil {
				st.errs <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	if !o.ExternalWorker {
		deps := prov.dependencies(inv, vault, catalog)
		start("worker", func() error { return runLifecycleWorker(runCtx, log, c, st.Namespace, deps) })
	}
	boot := api.BootConfig{PublicURL: st.APIURL}
	start("api", func() error {
		return serveAPIOn(runCtx, log, apiListener, api.Config{
			Temporal: c, Inventory: inv, Credentials: vault, Profiles: catalog, Registry: reg,
			Logger: log, Namespace: st.Namespace, Boot: boot,
			// The benchmark is one client address making thousands of
			// calls; a per-address limit would measure the limiter.
			RateLimit: 0,
		})
	})
	if err := waitHTTP(ctx, st.HTTP, st.APIURL+"/healthz"); err != nil {
		return nil, err
	}
	up = true
	return st, nil
}

// freshDatabase names a database of its own for this run after the URL's,
// so that no earlier run's lifecycles (same serials) are in the way.
func freshDatabase(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return "", err
	}
	u.Path = "/" + strings.Trim(u.Path, "/") + "_" + hex.EncodeToString(suffix)
	return u.String(), nil
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Redacted()
}

// benchLayout is site bench with enough racks for servers.
func benchLayout(servers int) inventory.Layout {
	l := inventory.Layout{Sites: []inventory.Site{{Name: benchSite, Description: "metalflow bench"}}}
	for i := range (max(servers, 1) + benchRackUnits - 1) / benchRackUnits {
		l.Racks = append(l.Racks, inventory.Rack{Site: benchSite, Room: "A", Name: benchRackName(i), HeightU: 42})
	}
	return l
}

func benchRackName(i int) string { return fmt.Sprintf("R%04d", i+1) }

// benchLocation is where the i-th server of a benchmark is racked.
func benchLocation(i int) (rack string, unit int) {
	return benchRackName(i / benchRackUnits), i%benchRackUnits + 1
}

// startBenchFleet starts the simulated BMCs; speed 0 takes every hardware
// delay to a nanosecond (bmcsim reads 0 as "the default").
func startBenchFleet(n int, speed float64, apiURL string) (*bmcsim.Fleet, error) {
	cfg := bmcsim.Config{
		Count:   n,
		Vendor:  bmcsim.VendorMixed,
		BootURL: apiURL + "/boot/ipxe?mac=${mac}",
	}
	if speed == 0 {
		cfg.PostDelay, cfg.ShutdownDelay, cfg.InstallDelay, cfg.TaskDuration, cfg.RebootDuration =
			time.Nanosecond, time.Nanosecond, time.Nanosecond, time.Nanosecond, time.Nanosecond
		cfg.Speed = 1
	} else {
		// The same real-hardware delays as metalflow dev's fleet.
		cfg.PostDelay, cfg.ShutdownDelay, cfg.InstallDelay, cfg.TaskDuration, cfg.RebootDuration =
			60*time.Second, 10*time.Second, 5*time.Minute, 20*time.Second, 60*time.Second
		cfg.Speed = speed
	}
	fleet, err := bmcsim.Start(cfg)
	if err != nil {
		return nil, fmt.Errorf("simulated fleet: %w", err)
	}
	return fleet, nil
}

// waitHTTP waits until url answers at all.
func waitHTTP(ctx context.Context, hc *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if res, err := hc.Do(req); err == nil {
			_ = res.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never answered: %w", url, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops everything the stack started, the last started first.
func (st *benchStack) Close() error {
	if st.cancel != nil {
		st.cancel()
	}
	st.wg.Wait()
	close(st.errs)
	var all []error
	for err := range st.errs {
		all = append(all, err)
	}
	for i := len(st.closers) - 1; i >= 0; i-- {
		if err := st.closers[i](); err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

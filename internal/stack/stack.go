// Package stack assembles a whole metalflow in one process: the embedded
// Temporal server (and its Web UI), the inventory, the API, the lifecycle
// worker and, when asked, a simulated fleet. `metalflow dev` and the
// benchmarks run it; the production roles run its parts one at a time.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/api"
	bootservice "github.com/metalflow/metalflow/api/boot"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/internal/devserver"
	"github.com/metalflow/metalflow/internal/telemetry"
	"github.com/metalflow/metalflow/internal/temporalx"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workers"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
)

// Where the embedded Temporal keeps its state, besides a postgres:// URL.
const (
	TemporalInMemory = "memory"
	TemporalSQLite   = "sqlite" // temporal.db in Config.DataDir
)

// Config is one in-process metalflow. An optional part left at its zero
// value is not started.
type Config struct {
	Log *slog.Logger
	// DataDir keeps the inventory (metalflow.db), Temporal's SQLite file
	// and, unless CredentialsKey names another file, the credential key.
	// Empty: a temporary directory, removed at Close.
	DataDir  string
	Temporal TemporalConfig
	// LayoutFile is a YAML file of sites and racks applied at start;
	// Layouts are applied after it, in order.
	LayoutFile string
	Layouts    []inventory.Layout
	// CredentialsKey is the file of the key that seals BMC credentials,
	// created if missing; empty: credentials.key in DataDir.
	CredentialsKey string
	// ProfilesDir holds hardware profile YAML files; empty: the built-in
	// default profile only.
	ProfilesDir string
	API         APIConfig
	// Worker runs the lifecycle worker in this process with these
	// dependencies, the stack filling in its inventory, credentials and
	// profiles. Nil leaves the worker to another process, which dials
	// Stack.TemporalAddress and shares InventoryURL and CredentialsKey.
	Worker *workers.LifecycleDependencies
	// Fleet starts simulated servers that netboot from this API.
	Fleet *FleetConfig
	// Netboot runs DHCP and TFTP for real machines; nil leaves them off.
	Netboot *NetbootConfig
}

// TemporalConfig is the embedded Temporal server.
type TemporalConfig struct {
	// Store is TemporalInMemory, TemporalSQLite or a
	// postgres://user:password@host:port/database URL.
	Store string
	// Address is the gRPC frontend's listen address, for the temporal CLI
	// and separate workers; empty: a free loopback port.
	Address string
	// UIAddress is the Web UI's listen address; empty: no Web UI.
	UIAddress string
	// Namespace is created at start; empty: "default".
	Namespace string
	// LogLevel filters the server's own (chatty) logs.
	LogLevel slog.Level
}

// APIConfig is the REST API and operator UI.
type APIConfig struct {
	// Address is the listen address; empty: a free loopback port.
	Address string
	// Boot is the boot service; an empty PublicURL is the API's own URL.
	Boot                 api.BootConfig
	RateLimit            float64
	OpenServiceDiscovery bool
	// Images is the image catalog's configuration; an empty Dir is
	// images/ in the data directory.
	Images api.ImagesConfig
	// Token, when set, is issued before the API starts, so that the API
	// finds a token and prints none, and the caller holds the secret in
	// Stack.Token without reading logs.
	Token *auth.IssueInput
	// AllowLoopbackBMC takes BMC addresses on loopback, for a fleet
	// simulated apart from the stack; a stack with a Fleet takes them
	// anyway, since that is where its fleet is.
	AllowLoopbackBMC bool
}

// Stack is a running metalflow.
type Stack struct {
	APIURL          string
	Token           string
	Temporal        client.Client
	TemporalAddress string
	// TemporalUIURL is "" without a Web UI.
	TemporalUIURL  string
	Namespace      string
	InventoryURL   string
	CredentialsKey string
	// Fleet is nil without a simulated fleet.
	Fleet *bmcsim.Fleet

	log     *slog.Logger
	ctx     context.Context // the parts'; ends at Close or at a part's failure
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	failed  []error
	closers []func() error
	once    sync.Once
	closed  error
}

// Start brings the stack up; ctx bounds the start only. On error nothing
// is left running.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	log := cfg.Log
	st := &Stack{log: log, Namespace: cfg.Temporal.Namespace}
	if st.Namespace == "" {
		st.Namespace = "default"
	}
	up := false
	defer func() {
		if !up {
			_ = st.Close()
		}
	}()
	dir := cfg.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "metalflow-")
		if err != nil {
			return nil, err
		}
		st.closers = append(st.closers, func() error { return os.RemoveAll(tmp) })
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	st.InventoryURL = filepath.Join(dir, "metalflow.db")
	imagesCfg := cfg.API.Images
	if imagesCfg.Dir == "" {
		imagesCfg.Dir = filepath.Join(dir, "images")
	}
	st.CredentialsKey = cfg.CredentialsKey
	if st.CredentialsKey == "" {
		st.CredentialsKey = filepath.Join(dir, "credentials.key")
	}

	inv, err := OpenInventory(ctx, log, st.InventoryURL, cfg.LayoutFile)
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, inv.Close)
	for _, l := range cfg.Layouts {
		if err := inv.ApplyLayout(ctx, l); err != nil {
			return nil, fmt.Errorf("apply layout: %w", err)
		}
	}
	vault, err := OpenVault(ctx, st.CredentialsKey, inv)
	if err != nil {
		return nil, err
	}
	catalog, err := OpenProfiles(cfg.ProfilesDir)
	if err != nil {
		return nil, err
	}
	if cfg.API.Token != nil {
		tokens := &auth.Tokens{Store: inv}
		if st.Token, _, err = tokens.Issue(ctx, *cfg.API.Token); err != nil {
			return nil, fmt.Errorf("issue the %s token: %w", cfg.API.Token.Name, err)
		}
	}

	// Bind the API before the simulated fleet takes its many ephemeral
	// ports, so none of them can land on the API's address.
	apiAddr := cfg.API.Address
	if apiAddr == "" {
		apiAddr = "127.0.0.1:0"
	}
	apiListener, err := ListenAPI(apiAddr)
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() error { _ = apiListener.Close(); return nil })
	st.APIURL = "http://" + apiListener.Addr().String()
	boot := cfg.API.Boot
	if boot.PublicURL == "" {
		boot.PublicURL = st.APIURL
	}

	srv, err := startTemporal(cfg.Temporal, st.Namespace, dir, log)
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() error {
		if err := srv.Stop(); err != nil {
			log.Warn("temporal server stop", "error", err)
		}
		return nil
	})
	st.TemporalAddress = srv.FrontendAddress()
	if cfg.Temporal.UIAddress != "" {
		st.TemporalUIURL = HTTPURL(cfg.Temporal.UIAddress)
	}

	if cfg.Fleet != nil {
		if st.Fleet, err = startFleet(log, *cfg.Fleet, boot.PublicURL); err != nil {
			return nil, err
		}
		st.closers = append(st.closers, st.Fleet.Close)
	}

	reg := telemetry.NewRegistry()
	c, metrics, err := NewTemporalClient(log, reg, st.TemporalAddress, st.Namespace)
	if err != nil {
		return nil, err
	}
	st.closers = append(st.closers, func() error { _ = metrics.Close(); return nil }, func() error { c.Close(); return nil })
	st.Temporal = c
	if err := temporalx.WaitReady(ctx, c); err != nil {
		return nil, err
	}
	// A database created by an older metalflow may lack newer attributes.
	if err := temporalx.EnsureSearchAttributes(ctx, c, st.Namespace, serverattrs.Schema()); err != nil {
		return nil, err
	}
	// The stack runs both Temporal and the inventory: the namespace acts
	// on this one, and workers started apart must open it too.
	bind := Binding{Namespace: st.Namespace, Inventory: inv, Where: InventoryWhere(st.InventoryURL), Owner: true, Wait: 30 * time.Second}
	if err := bind.Check(ctx, log, c.WorkflowService()); err != nil {
		return nil, err
	}

	st.ctx, st.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if cfg.Worker != nil {
		deps := *cfg.Worker
		deps.Inventory, deps.Credentials, deps.Profiles = inv, vault, catalog
		st.run("worker", func(ctx context.Context) error {
			return RunLifecycleWorker(ctx, log, c, st.Namespace, deps)
		})
	}
	st.run("api", func(ctx context.Context) error {
		return ServeAPI(ctx, log, apiListener, api.Config{
			Temporal:      c,
			Inventory:     inv,
			Credentials:   vault,
			Profiles:      catalog,
			Registry:      reg,
			Logger:        log,
			TemporalUIURL: st.TemporalUIURL,
			Namespace:     st.Namespace,
			Boot:          boot,

			OpenServiceDiscovery: cfg.API.OpenServiceDiscovery,
			RateLimit:            cfg.API.RateLimit,
			Images:               imagesCfg,
			BMC:                  api.BMCConfig{AllowLoopback: cfg.API.AllowLoopbackBMC || cfg.Fleet != nil},
		})
	})
	if cfg.Netboot != nil {
		st.run("netboot", func(ctx context.Context) error {
			return ServeNetboot(ctx, log, *cfg.Netboot, bootservice.New(bootservice.Config{Store: inv}), boot.PublicURL)
		})
	}
	up = true
	return st, nil
}

// startTemporal starts the embedded server on the store asked for.
func startTemporal(cfg TemporalConfig, namespace, dir string, log *slog.Logger) (*devserver.Server, error) {
	opts := devserver.Options{
		FrontendAddress:  cfg.Address,
		UIAddress:        cfg.UIAddress,
		Namespace:        namespace,
		SearchAttributes: serverattrs.Schema(),
		Logger:           log,
		LogLevel:         cfg.LogLevel,
	}
	if opts.FrontendAddress == "" {
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		opts.FrontendAddress = addr
	}
	switch cfg.Store {
	case TemporalInMemory:
	case TemporalSQLite:
		opts.DatabaseFile = filepath.Join(dir, "temporal.db")
	default:
		opts.PostgresURL = cfg.Store
	}
	return devserver.Start(opts)
}

// freeLoopbackAddr is a 127.0.0.1 address no one listens on now, for a
// server that wants an address rather than a listener.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// run starts one part; the first to fail stops the others.
func (st *Stack) run(name string, fn func(ctx context.Context) error) {
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		if err := fn(st.ctx); err != nil {
			st.mu.Lock()
			st.failed = append(st.failed, fmt.Errorf("%s: %w", name, err))
			st.mu.Unlock()
			st.cancel()
		}
	}()
}

// Wait runs the stack until ctx ends or a part fails, then closes it.
func (st *Stack) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-st.ctx.Done():
	}
	return st.Close()
}

// Close stops every part, the last started first, and returns the parts'
// failures. Failing to release a resource is only logged: by then the
// work is done.
func (st *Stack) Close() error {
	st.once.Do(func() {
		if st.cancel != nil {
			st.cancel()
		}
		st.wg.Wait()
		for i := len(st.closers) - 1; i >= 0; i-- {
			if err := st.closers[i](); err != nil {
				st.log.Warn("stack close", "error", err)
			}
		}
		st.closed = errors.Join(st.failed...)
	})
	return st.closed
}

package stack

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/internal/telemetry"
	"github.com/metalflow/metalflow/internal/temporalx"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workers"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
)

// The parts below are what the production roles (api, worker) run one at
// a time, and what Start runs all together.

// OpenInventory opens the CMDB and applies a layout file if one is given.
func OpenInventory(ctx context.Context, log *slog.Logger, url, layoutFile string) (*inventory.Store, error) {
	store, err := inventory.OpenURL(ctx, url)
	if err != nil {
		return nil, err
	}
	if layoutFile != "" {
		layout, err := inventory.ReadLayoutFile(layoutFile)
		if err == nil {
			err = store.ApplyLayout(ctx, layout)
		}
		if err != nil {
			_ = store.Close()
			return nil, err
		}
		log.Info("inventory layout applied", "file", layoutFile, "sites", len(layout.Sites), "racks", len(layout.Racks))
	}
	return store, nil
}

// OpenVault seals credentials with the key in keyFile, created if missing.
// An empty keyFile keeps a random key in memory: what it sealed is lost
// with the process.
func OpenVault(ctx context.Context, keyFile string, inv *inventory.Store) (*credentials.Vault, error) {
	var key []byte
	if keyFile == "" {
		key = make([]byte, credentials.KeySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
	} else {
		k, err := credentials.LoadOrCreateKey(keyFile)
		if err != nil {
			return nil, err
		}
		key = k
	}
	// A key other than the one the inventory's secrets are sealed with
	// would fail every BMC login later, one server at a time, as
	// "credential missing": refuse it now, naming both.
	if _, err := inv.BindKey(ctx, credentials.Fingerprint(key)); err != nil {
		if errors.Is(err, inventory.ErrOtherKey) {
			return nil, fmt.Errorf("credential key %s: %w; give every api and worker the key file the inventory was first opened with (metalflow dev keeps it in its --data directory)", keyDescription(keyFile), err)
		}
		return nil, err
	}
	return credentials.NewVault(key, inv)
}

func keyDescription(keyFile string) string {
	if keyFile == "" {
		return "(a fresh random key)"
	}
	if abs, err := filepath.Abs(keyFile); err == nil {
		return abs
	}
	return keyFile
}

// OpenProfiles loads the hardware profiles of dir; empty dir means the
// built-in default profile only.
func OpenProfiles(dir string) (*profiles.Catalog, error) {
	if dir == "" {
		return profiles.NewCatalog()
	}
	return profiles.LoadDir(dir)
}

// NewTemporalClient is a lazy client whose SDK metrics go to reg: a role
// starts while Temporal is down and reports so rather than exiting.
func NewTemporalClient(log *slog.Logger, reg *prometheus.Registry, hostPort, namespace string) (client.Client, *telemetry.TemporalMetrics, error) {
	metrics := telemetry.NewTemporalMetrics(reg, log)
	c, err := temporalx.NewLazyClient(temporalx.ClientOptions{
		HostPort:  hostPort,
		Namespace: namespace,
		Logger:    log,
		Metrics:   metrics.Handler,
	})
	if err != nil {
		_ = metrics.Close()
		return nil, nil, err
	}
	return c, metrics, nil
}

// ListenAPI binds the API's address.
func ListenAPI(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("API listen on %s: %w", addr, err)
	}
	return ln, nil
}

// ServeAPI serves the REST API on ln until ctx ends, then drains it.
func ServeAPI(ctx context.Context, log *slog.Logger, ln net.Listener, cfg api.Config) error {
	cfg.Tokens = &auth.Tokens{Store: cfg.Inventory}
	if err := bootstrapAdminToken(ctx, log, cfg.Tokens, cfg.Inventory); err != nil {
		return err
	}
	srv := api.New(cfg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("API listening", "url", "http://"+ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("API server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("API shutdown: %w", err)
	}
	return <-errc
}

// bootstrapAdminToken issues the first admin token of an inventory that has
// none and logs it once: the way in for whoever started metalflow, who then
// issues everyone else's tokens. A restart finds the token and says nothing.
func bootstrapAdminToken(ctx context.Context, log *slog.Logger, tokens *auth.Tokens, inv *inventory.Store) error {
	existing, err := inv.ListTokens(ctx)
	if err != nil {
		return fmt.Errorf("read API tokens: %w", err)
	}
	if len(existing) > 0 {
		return nil
	}
	plain, _, err := tokens.Issue(ctx, auth.IssueInput{Name: "bootstrap-admin", User: "admin", Role: auth.Admin, By: "metalflow"})
	if err != nil {
		return fmt.Errorf("issue the first admin token: %w", err)
	}
	log.Warn("admin token: "+plain, "note", "shown once; send as Authorization: Bearer <token>; create others with POST /api/v1/tokens")
	return nil
}

// RunLifecycleWorker prepares the namespace and polls until ctx ends.
func RunLifecycleWorker(ctx context.Context, log *slog.Logger, c client.Client, namespace string, deps workers.LifecycleDependencies) error {
	if err := temporalx.WaitReady(ctx, c); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting
		}
		return err
	}
	// Workflows upsert these; without them every workflow task would fail.
	if err := temporalx.EnsureSearchAttributes(ctx, c, namespace, serverattrs.Schema()); err != nil {
		return err
	}
	w := workers.NewLifecycleWorker(c, deps)
	if err := w.Start(); err != nil {
		return fmt.Errorf("start lifecycle worker: %w", err)
	}
	log.Info("lifecycle worker polling", "taskQueue", serverapi.TaskQueue, "namespace", namespace)
	<-ctx.Done()
	w.Stop()
	return nil
}

// HTTPURL is where a browser on this machine reaches a listen address: a
// wildcard host becomes the loopback address.
func HTTPURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return "http://" + host + ":" + port
}

// Package api is metalflow's REST front door: it starts workflows, forwards
// data-center staff's actions to them as updates, and answers status from
// workflow queries. It holds no state of its own.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
	"golang.org/x/time/rate"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/boot"
	"github.com/metalflow/metalflow/api/decommission"
	"github.com/metalflow/metalflow/api/images"
	"github.com/metalflow/metalflow/api/internal/bmc"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/api/racks"
	"github.com/metalflow/metalflow/api/sd"
	"github.com/metalflow/metalflow/api/servers"
	"github.com/metalflow/metalflow/api/vips"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/ui"
)

// Config wires the API to its collaborators.
type Config struct {
	Temporal client.Client
	// Inventory answers what the CMDB knows directly (racks, assets,
	// tokens, monitoring targets, pending installs) and pre-checks
	// placements to spare a workflow a doomed update.
	Inventory *inventory.Store
	// Credentials seals BMC passwords; workflows get references.
	Credentials credentials.Store
	// Profiles are the known hardware profiles, for input checks.
	Profiles *profiles.Catalog
	// Registry receives the http_* metrics and is served at /metrics.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// TemporalUIURL links status answers and the operator page to the
	// Temporal Web UI; empty when there is none.
	TemporalUIURL string
	// Namespace is the Temporal namespace, used in Web UI links.
	Namespace string
	// Boot configures the boot service that netbooting servers talk to,
	// served by this API too.
	Boot BootConfig
	// Tokens authenticates callers; without it every protected route
	// answers 401 (fail closed).
	Tokens *auth.Tokens
	// RateLimit is the requests per second each client address may make
	// (bursts of twice that); 0 turns the limit off.
	RateLimit float64
	// OpenServiceDiscovery serves /api/v1/sd/targets without a token, for
	// Prometheus servers that cannot send one.
	OpenServiceDiscovery bool
	// Images configures the OS image catalog and how its bytes are served.
	Images ImagesConfig
	// BMC is which BMC addresses the API takes, besides the sites' BMC
	// networks.
	BMC BMCConfig
}

// BMCConfig is what the API holds BMC addresses to beyond the inventory's
// sites: a worker is sent there with the BMC's credentials.
type BMCConfig struct {
	// AllowLoopback takes BMCs on loopback: a simulated fleet on the
	// worker's host. Link-local, multicast and unspecified addresses are
	// refused always.
	AllowLoopback bool
	// Resolver looks up BMCs given by name; nil is the system's.
	Resolver interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
}

// ImagesConfig is where the API keeps uploaded images and who may fetch
// image bytes; the fields mean what images.Config's of the same name do.
type ImagesConfig struct {
	Dir            string
	MaxUploadBytes int64
	Open           bool
}

// BootConfig is how the API's boot service describes an install; the
// fields mean what boot.Config's of the same name do. The service's store,
// Temporal and logger are the API's.
type BootConfig struct {
	PublicURL   string
	KernelURL   string
	InitrdURL   string
	KernelArgs  string
	AgentKernel string
	AgentInitrd string
	// AgentDiskBenchmarkMiB: see boot.Config.
	AgentDiskBenchmarkMiB int
}

// Server is the HTTP API.
type Server struct {
	echo *echo.Echo
	cfg  Config
	http *http.Server
}

// maxBodyBytes bounds request bodies: the largest legitimate body (a rack of
// servers) is a few kilobytes.
const maxBodyBytes = "1M"

// New builds the API with every route registered.
func New(cfg Config) *Server {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = httpx.ErrorHandler(cfg.Logger)
	s := &Server{echo: e, cfg: cfg}

	e.Use(middleware.Recover())
	e.Use(httpx.Metrics(cfg.Registry))
	e.Use(httpx.RequestLog(cfg.Logger))
	// Image uploads stream gigabytes and bound themselves.
	e.Use(middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{Limit: maxBodyBytes, Skipper: images.BoundsOwnBody}))
	if cfg.RateLimit > 0 {
		// Per client address: one runaway script must not starve the
		// technicians' tablets.
		e.Use(middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
			// Health and metrics are for monitors; the boot service is for
			// machines installing, which must not wait behind people (a lost
			// phone-home parks an install).
			Skipper: func(c echo.Context) bool {
				p := c.Path()
				return p == "/healthz" || p == "/readyz" || p == "/metrics" || boot.Owns(p)
			},
			Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
				Rate: rate.Limit(cfg.RateLimit), Burst: 2 * int(cfg.RateLimit),
			}),
		}))
	}

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{Registry: cfg.Registry})))

	v1 := e.Group("/api/v1")
	// Open: the contract, which clients read before they hold a token.
	v1.GET("/openapi.json", s.openAPI)

	guard := access.New(access.Config{Tokens: cfg.Tokens, Store: cfg.Inventory, Logger: cfg.Logger})
	guard.Register(v1)
	v1.GET("/info", s.info, guard.AllowTenant(auth.Viewer))
	temporalUI := httpx.TemporalUI{URL: cfg.TemporalUIURL, Namespace: cfg.Namespace}
	addrs := bmc.Addresses{Inventory: cfg.Inventory, Resolver: cfg.BMC.Resolver, AllowLoopback: cfg.BMC.AllowLoopback}
	if addrs.Resolver == nil {
		addrs.Resolver = net.DefaultResolver
	}
	servers.Register(v1, guard, servers.Deps{
		Temporal: cfg.Temporal, Inventory: cfg.Inventory, Credentials: cfg.Credentials, BMCAddresses: addrs, Profiles: cfg.Profiles, UI: temporalUI,
	})
	decommission.Register(v1, guard, decommission.Deps{Temporal: cfg.Temporal, Credentials: cfg.Credentials, BMCAddresses: addrs, UI: temporalUI})
	racks.Register(v1, guard, racks.Deps{
		Temporal: cfg.Temporal, Inventory: cfg.Inventory, Credentials: cfg.Credentials, BMCAddresses: addrs, Profiles: cfg.Profiles, UI: temporalUI,
	})
	vips.Register(v1, guard, vips.Deps{Temporal: cfg.Temporal, Inventory: cfg.Inventory, UI: temporalUI})
	imgs := images.New(images.Config{
		Dir: cfg.Images.Dir, MaxUploadBytes: cfg.Images.MaxUploadBytes, Open: cfg.Images.Open,
		Catalog: cfg.Inventory, Grants: cfg.Inventory, Profiles: cfg.Profiles, Logger: cfg.Logger,
	})
	imgs.Register(v1, guard)
	// Prometheus servers that cannot send a token may be let in.
	if cfg.OpenServiceDiscovery {
		sd.Register(v1, cfg.Inventory)
	} else {
		sd.Register(v1, cfg.Inventory, guard.Allow(auth.Viewer))
	}

	// The boot service shares the API's address in a single-site install;
	// its routes are open (see package boot).
	boot.New(boot.Config{
		PublicURL: cfg.Boot.PublicURL, KernelURL: cfg.Boot.KernelURL, InitrdURL: cfg.Boot.InitrdURL, KernelArgs: cfg.Boot.KernelArgs,
		AgentKernel: cfg.Boot.AgentKernel, AgentInitrd: cfg.Boot.AgentInitrd, AgentDiskBenchmarkMiB: cfg.Boot.AgentDiskBenchmarkMiB,
		Store: cfg.Inventory, Lifecycles: cfg.Temporal, Logger: cfg.Logger,
		Mounts: []func(*echo.Group){imgs.MountBoot},
	}).Register(e)

	// Unknown API paths answer in JSON, not with the operator page's 404.
	v1.Any("/*", func(c echo.Context) error {
		return httpx.Errorf(http.StatusNotFound, "no such API route: %s %s", c.Request().Method, c.Request().URL.Path)
	})

	e.GET("/*", echo.WrapHandler(ui.Handler()))
	return s
}

// Handler exposes the API for tests and embedding.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.http = &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Updates wait for the workflow's answer; allow for a slow worker.
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  120 * time.Second,
	}
	if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.http == nil {
		return nil
	}
	return s.http.Shutdown(ctx)
}

type infoResponse struct {
	TemporalURL string `json:"temporalUrl,omitempty"`
	Namespace   string `json:"namespace"`
}

// info tells the operator page where the Temporal Web UI is.
func (s *Server) info(c echo.Context) error {
	return c.JSON(http.StatusOK, infoResponse{TemporalURL: s.cfg.TemporalUIURL, Namespace: s.cfg.Namespace})
}

// Package devserver runs a single-process Temporal server (frontend, history,
// matching and worker services) on SQLite, plus the Temporal Web UI, the way
// the Temporal CLI's dev server does. It exists for `metalflow dev` and the
// integration tests; production runs the official Temporal images instead.
//
// It pulls in the whole Temporal server, which takes minutes to compile on a
// small machine: only cmd/ and the integration tests may import it, never a
// package that unit tests build.
package devserver

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
)

// Options describe one embedded Temporal server.
type Options struct {
	// DatabaseFile is the SQLite file holding all Temporal state. Empty means
	// in-memory: everything is lost when the process ends.
	DatabaseFile string
	// PostgresURL (postgres://user:password@host:port/database) keeps
	// Temporal's state in PostgreSQL instead, visibility in
	// "<database>_visibility"; both are created with their schemas when
	// missing. It excludes DatabaseFile.
	PostgresURL string
	// FrontendAddress is host:port of the gRPC frontend that SDK clients, the
	// `temporal` CLI and separate workers dial.
	FrontendAddress string
	// UIAddress is host:port of the Temporal Web UI; empty disables it.
	UIAddress string
	// Namespace is created at start if missing.
	Namespace string
	// SearchAttributes are registered on the namespace when it is created.
	SearchAttributes map[string]enumspb.IndexedValueType
	Logger           *slog.Logger
	// LogLevel filters the server's own (chatty) logs; metalflow's default is Warn.
	LogLevel slog.Level
}

// Server is a running embedded Temporal server.
type Server struct {
	temporal        temporal.Server
	ui              *uiserver.Server
	frontendAddress string
	uiAddress       string
}

// clusterName is fixed: a dev server is a single-cluster deployment and the
// name is persisted in the SQLite file, so it must not change across restarts.
const clusterName = "active"

// Start builds the server config, prepares the SQLite schema and namespace,
// and starts the Temporal services and the Web UI.
func Start(opts Options) (*Server, error) {
	if opts.Namespace == "" {
		return nil, errors.New("devserver: namespace is required")
	}
	if opts.Logger == nil {
		return nil, errors.New("devserver: logger is required")
	}
	frontendHost, frontendPort, err := splitHostPort(opts.FrontendAddress)
	if err != nil {
		return nil, fmt.Errorf("devserver: frontend address: %w", err)
	}
	// Fail early with a clear message instead of a deep fx error when the
	// port is taken, e.g. by another dev server.
	if err := checkFree(opts.FrontendAddress); err != nil {
		return nil, fmt.Errorf("devserver: frontend %s: %w", opts.FrontendAddress, err)
	}
	if opts.UIAddress != "" {
		if err := checkFree(opts.UIAddress); err != nil {
			return nil, fmt.Errorf("devserver: web UI %s: %w", opts.UIAddress, err)
		}
	}

	logger := newServerLogger(opts.Logger.With("component", "temporal-server"), opts.LogLevel)
	var stores persistenceStores
	switch {
	case opts.PostgresURL != "" && opts.DatabaseFile != "":
		return nil, errors.New("devserver: a PostgreSQL URL and a SQLite file exclude each other")
	case opts.PostgresURL != "":
		pg, err := preparePostgres(opts)
		if err != nil {
			return nil, err
		}
		stores = persistenceStores{main: "postgres", visibility: "postgres-visibility",
			all: map[string]config.DataStore{"postgres": {SQL: pg.main}, "postgres-visibility": {SQL: pg.visibility}}}
	default:
		sqlConf, err := prepareSQLite(opts)
		if err != nil {
			return nil, err
		}
		stores = persistenceStores{main: "sqlite", visibility: "sqlite", all: map[string]config.DataStore{"sqlite": {SQL: sqlConf}}}
	}
	ports, err := freePorts(frontendHost, 4)
	if err != nil {
		return nil, err
	}
	conf := serverConfig(frontendHost, frontendPort, ports, stores)

	authorizer, err := authorization.GetAuthorizerFromConfig(&conf.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("devserver: authorizer: %w", err)
	}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&conf.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("devserver: claim mapper: %w", err)
	}
	hostPort := func(svc string) static.Hosts {
		return static.SingleLocalHost(net.JoinHostPort(frontendHost, strconv.Itoa(conf.Services[svc].RPC.GRPCPort)))
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(conf),
		temporal.ForServices(temporal.DefaultServices),
		// Static membership: one process holds every service, so ringpop
		// gossip would only add ports and start-up delay.
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: hostPort("frontend"),
			primitives.HistoryService:  hostPort("history"),
			primitives.MatchingService: hostPort("matching"),
			primitives.WorkerService:   hostPort("worker"),
		}),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			// The Web UI and the API list workflows often; the default
			// visibility rate limit is sized for a shared cluster.
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 200,
			dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8192,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("devserver: build server: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("devserver: start server: %w", err)
	}
	s := &Server{temporal: srv, frontendAddress: opts.FrontendAddress, uiAddress: opts.UIAddress}
	if opts.UIAddress != "" {
		if err := s.startUI(opts); err != nil {
			_ = srv.Stop()
			return nil, err
		}
	}
	return s, nil
}

// FrontendAddress is where SDK clients connect.
func (s *Server) FrontendAddress() string { return s.frontendAddress }

// UIAddress is where the Temporal Web UI listens ("" when disabled).
func (s *Server) UIAddress() string { return s.uiAddress }

// Stop stops the Web UI and the Temporal services.
func (s *Server) Stop() error {
	if s.ui != nil {
		s.ui.Stop()
	}
	return s.temporal.Stop()
}

func (s *Server) startUI(opts Options) error {
	host, port, err := splitHostPort(opts.UIAddress)
	if err != nil {
		return fmt.Errorf("devserver: web UI address: %w", err)
	}
	s.ui = uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		Host:                host,
		Port:                port,
		TemporalGRPCAddress: opts.FrontendAddress,
		EnableUI:            true,
		DefaultNamespace:    opts.Namespace,
		// The dev UI is served over plain HTTP on loopback.
		CORS:             uiconfig.CORS{CookieInsecure: true},
		HideLogs:         true,
		DisableNewsFetch: true,
	}))
	// ui-server's Start blocks and exits the process on a listen error; the
	// port was checked free above, so a failure here is a real surprise.
	go func() {
		if err := s.ui.Start(); err != nil {
			opts.Logger.Error("temporal web UI stopped", "error", err)
		}
	}()
	return waitListening(opts.UIAddress, 10*time.Second)
}

func prepareSQLite(opts Options) (*config.SQL, error) {
	conf := &config.SQL{PluginName: sqliteplugin.PluginName}
	if opts.DatabaseFile == "" {
		// A shared-cache in-memory database lives as long as one connection
		// to it is open; the random name keeps two servers in one process
		// (tests) apart.
		conf.ConnectAttributes = map[string]string{"mode": "memory", "cache": "shared"}
		conf.DatabaseName = strconv.Itoa(rand.IntN(1 << 30))
	} else {
		// WAL keeps the file consistent if the process is killed mid-write.
		conf.ConnectAttributes = map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "normal"}
		conf.DatabaseName = opts.DatabaseFile
		if _, err := os.Stat(opts.DatabaseFile); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(filepath.Dir(opts.DatabaseFile), 0o750); err != nil {
				return nil, fmt.Errorf("devserver: data dir: %w", err)
			}
			if err := sqliteschema.SetupSchema(conf); err != nil {
				return nil, fmt.Errorf("devserver: set up schema in %s: %w", opts.DatabaseFile, err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("devserver: database file: %w", err)
		}
	}
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, opts.Namespace, false, opts.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("devserver: namespace config: %w", err)
	}
	if err := sqliteschema.CreateNamespaces(conf, ns); err != nil {
		return nil, fmt.Errorf("devserver: create namespace %q: %w", opts.Namespace, err)
	}
	return conf, nil
}

// persistenceStores name the data stores of Temporal's state and of its
// visibility records.
type persistenceStores struct {
	main, visibility string
	all              map[string]config.DataStore
}

func serverConfig(host string, frontendPort int, ports []int, stores persistenceStores) *config.Config {
	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = host
	conf.Persistence.DefaultStore = stores.main
	conf.Persistence.VisibilityStore = stores.visibility
	// One shard: a single process cannot use more, and the shard count can
	// never change once the database exists.
	conf.Persistence.NumHistoryShards = 1
	conf.Persistence.DataStores = stores.all
	frontend := net.JoinHostPort(host, strconv.Itoa(frontendPort))
	conf.ClusterMetadata = &cluster.Config{
		EnableGlobalNamespace:    false,
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				RPCAddress:             frontend,
				HTTPAddress:            net.JoinHostPort(host, strconv.Itoa(ports[3])),
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	service := func(port int) config.Service {
		return config.Service{RPC: config.RPC{GRPCPort: port, BindOnIP: host}}
	}
	frontendSvc := service(frontendPort)
	frontendSvc.RPC.HTTPPort = ports[3]
	conf.Services = map[string]config.Service{
		"frontend": frontendSvc,
		"history":  service(ports[0]),
		"matching": service(ports[1]),
		"worker":   service(ports[2]),
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontend
	return &conf
}

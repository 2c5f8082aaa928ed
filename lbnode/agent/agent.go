// Package agent is the Temporal worker that runs on every load-balancer node
// (`metalflow lbnode --temporal`): it carries out the lbapi activities on the
// node's own task queue against the XDP data plane, keeps the node's desired
// state across restarts, health-checks backends, announces VIPs over BGP
// while the data plane is healthy, and registers the node with metalflow.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Defaults for Config fields left zero.
const (
	DefaultHeartbeatInterval = 15 * time.Second
	DefaultDataPlaneInterval = 2 * time.Second
	DefaultReconcileInterval = time.Minute
)

// Config is what an Agent needs to run one node.
type Config struct {
	// Node is the node's data plane, opened (or adopted) by the caller, who
	// also closes it: the agent never detaches it.
	Node          *lbnode.Node
	Cluster       string
	NodeName      string
	FailureDomain string
	// Capacity is how many VIPs the node takes; 0 is no limit.
	Capacity int
	// StateDir holds the applied specs, so a restarted agent knows what it
	// was asked to run.
	StateDir string
	// Announcer is the node's BGP speaker; nil means the node has no BGP.
	Announcer Announcer
	// Reporter carries damped backend health changes to the VIP workflows;
	// nil only logs them.
	Reporter Reporter
	Logger   *slog.Logger
	// HeartbeatInterval is how often the node tells metalflow it is alive.
	HeartbeatInterval time.Duration
	// DataPlaneInterval is how often the agent checks that the program is
	// still attached and its maps readable.
	DataPlaneInterval time.Duration
	// ReconcileInterval is how often the node looks for VIPs no workflow
	// wants on it any more, besides once at start.
	ReconcileInterval time.Duration
	// MainTaskQueue is metalflow's own task queue, where the registry
	// workflow runs.
	MainTaskQueue string
}

func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Node == nil:
		return c, errors.New("agent: no data plane node")
	case c.Cluster == "" || c.NodeName == "":
		return c, errors.New("agent: cluster and node name are required")
	case c.StateDir == "":
		return c, errors.New("agent: a state directory is required")
	case c.Capacity < 0:
		return c, fmt.Errorf("agent: capacity %d is negative", c.Capacity)
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if c.DataPlaneInterval <= 0 {
		c.DataPlaneInterval = DefaultDataPlaneInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}

// Agent runs one LB node on behalf of metalflow's VIP workflows.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	node   *lbnode.Node
	state  *stateFile
	health *HealthChecker

	// mu serialises everything that changes the data plane, the desired
	// state or the routes: Temporal may run several activities at once.
	mu   sync.Mutex
	vips map[string]vipRecord
	// healthy is the data plane's last known health; routes are announced
	// only while it holds.
	healthy bool
	// stopping is set by Shutdown: from then on the node announces nothing,
	// whatever an activity still running asks for.
	stopping bool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New starts an agent on an open node. It reads the specs a previous run
// applied and takes them up as they are: the data plane was adopted with its
// maps intact, so nothing is reprogrammed; health checks resume and, if the
// data plane is healthy, routes are announced again.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	state, err := openStateFile(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	records, err := state.load()
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:   cfg,
		log:   cfg.Logger,
		node:  cfg.Node,
		state: state,
		vips:  records,
		stop:  make(chan struct{}),
	}
	a.health = NewHealthChecker(HealthCheckerConfig{
		Cluster: cfg.Cluster, Node: cfg.NodeName, Reporter: cfg.Reporter, Logger: cfg.Logger,
	})
	for name, rec := range records {
		// An adopted data plane holds what was applied and nothing is
		// touched. A fresh one (the node rebooted, its pins gone) is
		// programmed from the state: the node's last word from metalflow,
		// which the workflows correct through the digests if it is stale.
		if !a.programmed(rec) {
			a.log.Warn("the data plane does not hold what was last applied; programming it", "vip", name)
			if p, err := planOf(rec.Spec); err == nil {
				if _, err := a.program(name, p); err != nil {
					a.log.Error("programming a VIP from the saved state; its digest stays empty until the next apply", "vip", name, "err", err)
				}
			}
		}
		a.health.Set(rec.Spec)
	}
	a.mu.Lock()
	dpErr := a.checkDataPlane()
	a.healthy = dpErr == nil
	err = a.syncRoutes(ctx, "")
	a.mu.Unlock()
	if dpErr != nil {
		// The watch speaks only of changes: without this line a node
		// that starts unhealthy, and so is placed nowhere, never says why.
		a.log.Error("data plane unhealthy at start; announcing nothing and reporting unhealthy until it forwards", "err", dpErr)
	}
	if err != nil {
		a.log.Warn("announcing the VIPs taken up from the last run; retrying with the data-plane checks", "err", err)
	}
	a.log.Info("agent started", "cluster", cfg.Cluster, "node", cfg.NodeName, "vips", len(records),
		"adopted", cfg.Node.Adopted(), "healthy", a.healthy)
	a.wg.Add(1)
	go a.watchDataPlane()
	return a, nil
}

// Close stops health checks and the data-plane watch. Routes and the data
// plane stay as they are; Shutdown withdraws routes first when the node is
// really going away.
func (a *Agent) Close() {
	a.closeOnce.Do(func() {
		close(a.stop)
		a.wg.Wait()
		a.health.Close()
	})
}

// Shutdown withdraws every route the node announces, so that traffic moves
// to the other nodes before this one stops answering activities.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopping = true
	if a.cfg.Announcer == nil {
		return nil
	}
	var errs []error
	for p := range a.cfg.Announcer.Announced() {
		if err := a.cfg.Announcer.Withdraw(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// Healthy says whether the data plane was attached and readable at the last
// check.
func (a *Agent) Healthy() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.healthy
}

// Specs is a copy of the VIP specs the node runs, by name.
func (a *Agent) Specs() map[string]lbapi.VIPSpec {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]lbapi.VIPSpec, len(a.vips))
	for name, rec := range a.vips {
		out[name] = rec.Spec
	}
	return out
}

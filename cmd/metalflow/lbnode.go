//go:build !agent

package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/metalflow/metalflow/internal/stack"
	"github.com/metalflow/metalflow/internal/telemetry"
	"github.com/metalflow/metalflow/internal/temporalx"
	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/agent"
	"github.com/metalflow/metalflow/lbnode/bgp"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// runLBNode is `metalflow lbnode`: the XDP load balancer data plane, run
// either standalone from a YAML file or, with --temporal, as the node's
// Temporal worker that metalflow's VIP workflows program.
func runLBNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lbnode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	iface := fs.String("iface", "", "interface the load balancer receives VIP traffic on and sends it back out of")
	configPath := fs.String("config", "", "YAML file with nextHopMAC and vips; SIGHUP reloads it")
	mode := fs.String("xdp-mode", string(lbnode.AttachAuto), "native, generic or auto (generic on a veth, else native falling back to generic)")
	pinRoot := fs.String("pin-root", lbnode.DefaultPinRoot, "bpf filesystem directory the data plane is pinned under; under `ip netns exec`, one mounted outside /sys, which outlives the command")
	stats := fs.Bool("stats", false, "print the counters of the data plane running on --iface and exit")
	detach := fs.Bool("detach", false, "remove the data plane from --iface and exit (forwarding stops)")
	statsEvery := fs.Duration("stats-interval", 0, "with --config, print counters this often (0 = never)")
	var wf lbWorkerFlags
	wf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: metalflow lbnode --iface IF (--config FILE | --temporal HOST:PORT --cluster C --node N | --stats | --detach) [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lbnode: unexpected arguments %q", fs.Args())
	}
	if *iface == "" {
		return errors.New("lbnode: --iface is required")
	}
	xdpMode, err := lbnode.ParseAttachMode(*mode)
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	modes := 0
	for _, set := range []bool{*configPath != "", wf.temporal != "", *stats, *detach} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return errors.New("lbnode: give exactly one of --config, --temporal, --stats or --detach")
	}
	if wf.temporal != "" {
		if err := wf.check(); err != nil {
			return fmt.Errorf("lbnode: %w", err)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("lbnode: must run as root: it loads XDP programs and pins BPF maps")
	}
	if err := ensurePinRoot(*pinRoot); err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}

	switch {
	case *stats:
		s, err := lbnode.ReadPinnedStats(*pinRoot, *iface)
		if err != nil {
			return fmt.Errorf("lbnode: %w", explainMissingPins(err, *pinRoot))
		}
		return lbnode.WriteStats(stdout, s)
	case *detach:
		if err := lbnode.DetachPinned(*pinRoot, *iface); err != nil {
			return fmt.Errorf("lbnode: %w", explainMissingPins(err, *pinRoot))
		}
		fmt.Fprintf(stdout, "load balancer detached from %s\n", *iface)
		return nil
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	if why := lbnode.ShortLivedPins(*pinRoot); why != "" {
		log.Warn("the data plane goes when this process exits, a restart cannot adopt it, and --stats from another `ip netns exec` cannot see it: "+
			why+"; pin on a bpf filesystem that outlives this command with --pin-root", "iface", *iface)
	}
	if wf.temporal != "" {
		return runLBWorker(ctx, log, wf, lbnode.Config{Interface: *iface, Mode: xdpMode, PinRoot: *pinRoot, Logger: log})
	}
	desired, err := lbnode.ReadConfigFile(*configPath)
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	nextHop := desired.NextHopMAC
	if nextHop == nil {
		if nextHop, err = lbnode.LookupGatewayMAC(*iface); err != nil {
			return fmt.Errorf("lbnode: %w", err)
		}
	}
	node, err := lbnode.Open(lbnode.Config{
		Interface:  *iface,
		Mode:       xdpMode,
		PinRoot:    *pinRoot,
		NextHopMAC: nextHop,
		MTU:        desired.MTU,
		Seed:       desired.Seed,
		GUEPort:    desired.GUEPort,
		Logger:     log,

		EncapSourceV4:     desired.EncapSourceV4,
		EncapSourceV6:     desired.EncapSourceV6,
		FlowTableSize:     desired.FlowTableSize,
		SYNFloodThreshold: desired.SYNFloodThreshold,
	})
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	// Closing leaves the data plane pinned and forwarding, so a restarted
	// process picks it up without a gap; --detach removes it.
	defer node.Close()
	if err := node.Apply(desired.Services); err != nil {
		return fmt.Errorf("lbnode: applying %s: %w", *configPath, err)
	}
	log.Info("serving", "iface", *iface, "vips", len(desired.Services), "adopted", node.Adopted(), "next_hop", nextHop.String())

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if *statsEvery > 0 {
		t := time.NewTicker(*statsEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping; the data plane stays attached", "iface", *iface)
			return nil
		case <-hup:
			if err := reloadLBNode(node, *configPath, *iface); err != nil {
				log.Error("reload rejected; still serving the previous config", "err", err)
				continue
			}
			log.Info("reloaded", "config", *configPath)
		case <-tick:
			s, err := node.Stats()
			if err != nil {
				log.Error("reading counters", "err", err)
				continue
			}
			_ = lbnode.WriteStats(stdout, s)
		}
	}
}

func reloadLBNode(node *lbnode.Node, path, iface string) error {
	desired, err := lbnode.ReadConfigFile(path)
	if err != nil {
		return err
	}
	if desired.Seed != node.Seed() {
		return fmt.Errorf("seed changed from %d to %d: that moves every flow, so it needs --detach and a restart", node.Seed(), desired.Seed)
	}
	if gue := cmp.Or(desired.GUEPort, lbnode.DefaultGUEPort); gue != node.GUEPort() {
		return fmt.Errorf("guePort changed from %d to %d: that needs --detach and a restart", node.GUEPort(), gue)
	}
	nextHop := desired.NextHopMAC
	if nextHop == nil {
		if nextHop, err = lbnode.LookupGatewayMAC(iface); err != nil {
			return err
		}
	}
	if err := node.Apply(desired.Services); err != nil {
		return err
	}
	if err := node.SetNextHop(nextHop); err != nil {
		return err
	}
	mtu := desired.MTU
	if mtu == 0 {
		mtu = lbnode.DefaultMTU
	}
	return node.SetMTU(mtu)
}

// ensurePinRoot mounts the bpf filesystem at /sys/fs/bpf when the pin root
// lives there and nothing is mounted yet, as on a freshly booted node.
func ensurePinRoot(pinRoot string) error {
	const bpffs = "/sys/fs/bpf"
	if rel, err := filepath.Rel(bpffs, pinRoot); err == nil && filepath.IsLocal(rel) {
		return lbnode.MountBPFFS(bpffs)
	}
	return nil
}

// lbWorkerFlags configure `metalflow lbnode --temporal`: the node as a
// Temporal worker on its own task queue.
type lbWorkerFlags struct {
	temporal      string
	namespace     string
	cluster       string
	node          string
	failureDomain string
	capacity      int
	stateDir      string
	metricsListen string
	nextHopMAC    string
	bgp           bgpFlags
}

func (w *lbWorkerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.temporal, "temporal", "", "Temporal frontend host:port; runs the node as a worker that metalflow's VIP workflows program")
	fs.StringVar(&w.namespace, "namespace", "default", "with --temporal, the Temporal namespace")
	fs.StringVar(&w.cluster, "cluster", "", "with --temporal, the LB cluster this node belongs to")
	fs.StringVar(&w.node, "node", "", "with --temporal, this node's name in its cluster")
	fs.StringVar(&w.failureDomain, "failure-domain", "", "with --temporal, what fails together with this node (rack, power feed)")
	fs.IntVar(&w.capacity, "capacity", 64, "with --temporal, how many VIPs this node takes; placement fills the least loaded clusters first")
	fs.StringVar(&w.stateDir, "state-dir", "/var/lib/metalflow/lbnode", "with --temporal, where the node keeps the VIP specs it was given")
	fs.StringVar(&w.metricsListen, "metrics-listen", "", "with --temporal, listen address for /metrics and /healthz; empty disables them")
	fs.StringVar(&w.nextHopMAC, "next-hop-mac", "", "with --temporal, MAC address encapsulated packets go to (default: the interface's IPv4 gateway)")
	w.bgp.register(fs)
}

func (w *lbWorkerFlags) check() error {
	switch {
	case w.cluster == "" || w.node == "":
		return errors.New("--temporal needs --cluster and --node")
	case w.capacity < 1:
		// Placement counts VIPs per unit of capacity: a node of capacity 0
		// would never be chosen.
		return fmt.Errorf("--capacity %d: a node takes at least one VIP", w.capacity)
	case w.stateDir == "":
		return errors.New("--state-dir must not be empty")
	}
	if w.nextHopMAC != "" {
		if m, err := net.ParseMAC(w.nextHopMAC); err != nil || len(m) != 6 {
			return fmt.Errorf("--next-hop-mac %q is not an Ethernet address", w.nextHopMAC)
		}
	}
	// Building the speaker checks the BGP flags without starting it.
	_, err := w.bgp.speaker(nil)
	return err
}

// runLBWorker opens (or adopts) the data plane and serves the node's task
// queue until ctx ends. The data plane stays attached afterwards, so a
// restarted worker takes over without a gap in forwarding.
func runLBWorker(ctx context.Context, log *slog.Logger, wf lbWorkerFlags, cfg lbnode.Config) error {
	var err error
	if wf.nextHopMAC != "" {
		cfg.NextHopMAC, _ = net.ParseMAC(wf.nextHopMAC) // check() parsed it
	} else if cfg.NextHopMAC, err = lbnode.LookupGatewayMAC(cfg.Interface); err != nil {
		return fmt.Errorf("lbnode: %w (or give --next-hop-mac)", err)
	}
	node, err := lbnode.Open(cfg)
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	defer node.Close()

	reg := telemetry.NewRegistry()
	c, metrics, err := stack.NewTemporalClient(log, reg, wf.temporal, wf.namespace)
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	defer func() { _ = metrics.Close() }()
	defer c.Close()

	speaker, err := wf.bgp.speaker(log)
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	var announcer agent.Announcer
	if speaker != nil {
		if err := speaker.Start(ctx); err != nil {
			return fmt.Errorf("lbnode: BGP: %w", err)
		}
		// Runs after the agent's shutdown has withdrawn every route: the
		// sessions close only once the peers have heard the withdrawals.
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := speaker.Stop(stopCtx); err != nil {
				log.Warn("BGP stop", "error", err)
			}
		}()
		announcer = speaker
		reg.MustRegister(bgp.NewCollector(speaker))
	}

	a, err := agent.New(ctx, agent.Config{
		Node: node, Cluster: wf.cluster, NodeName: wf.node, FailureDomain: wf.failureDomain,
		Capacity: wf.capacity, StateDir: wf.stateDir, Logger: log,
		Announcer:     announcer,
		Reporter:      agent.TemporalReporter{Client: c, Logger: log},
		MainTaskQueue: serverapi.TaskQueue,
	})
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	defer a.Close()
	reg.MustRegister(agent.NewCollector(a))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(name string, err error) {
		if err == nil {
			return
		}
		mu.Lock()
		errs = append(errs, fmt.Errorf("lbnode %s: %w", name, err))
		mu.Unlock()
		cancel()
	}
	if wf.metricsListen != "" {
		wg.Add(1)
		go func() { defer wg.Done(); fail("metrics", serveMetrics(ctx, log, wf.metricsListen, reg)) }()
	}
	if err := temporalx.WaitReady(ctx, c); err != nil && ctx.Err() == nil {
		fail("temporal", err)
	}
	if ctx.Err() == nil {
		fail("worker", a.Run(ctx, c))
	} else if err := a.Shutdown(context.Background()); err != nil {
		// Stopped before Temporal answered: still take the routes down.
		fail("shutdown", err)
	}
	cancel()
	wg.Wait()
	log.Info("stopping; the data plane stays attached", "iface", cfg.Interface, "node", wf.node)
	return errors.Join(errs...)
}

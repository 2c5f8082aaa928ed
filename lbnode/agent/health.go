package agent

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Health-check defaults, as lbapi.HealthCheck documents them.
const (
	DefaultCheckInterval = 2 * time.Second
	DefaultCheckTimeout  = time.Second
	DefaultFall          = 3
	DefaultRise          = 2
)

// Backend health as NodeReport gives it.
const (
	HealthUp      = "up"
	HealthDown    = "down"
	HealthUnknown = "unknown"
)

// reportTimeout bounds one health report, so a slow Temporal cannot stall
// a backend's probe loop for long.
const reportTimeout = 10 * time.Second

// DefaultReportResend is how long a check waits before sending an
// undelivered health report again: a verdict reached while Temporal was
// down must still reach the VIP's workflow once it is back, or a dead
// backend stays in every node's table.
const DefaultReportResend = 5 * time.Second

// Reporter carries a damped health change to whoever decides what to do
// about it: in production the VIP's workflow, which updates every node.
type Reporter interface {
	ReportBackendHealth(ctx context.Context, change lbapi.BackendHealthChange) error
}

// checkSpec is a health check with every default filled in; two equal
// checkSpecs probe the same way.
type checkSpec struct {
	kind     string
	port     uint16
	path     string
	interval time.Duration
	timeout  time.Duration
	fall     int
	rise     int
}

// resolveCheck fills in a check's defaults for a VIP whose first port is
// firstPort.
func resolveCheck(hc lbapi.HealthCheck, firstPort uint16) checkSpec {
	c := checkSpec{kind: hc.Kind, port: hc.Port, path: hc.Path,
		interval: time.Duration(hc.IntervalMS) * time.Millisecond,
		timeout:  time.Duration(hc.TimeoutMS) * time.Millisecond,
		fall:     hc.Fall, rise: hc.Rise}
	if c.port == 0 {
		c.port = firstPort
	}
	if c.path == "" {
		c.path = "/"
	}
	if c.interval <= 0 {
		c.interval = DefaultCheckInterval
	}
	if c.timeout <= 0 {
		c.timeout = DefaultCheckTimeout
	}
	if c.fall <= 0 {
		c.fall = DefaultFall
	}
	if c.rise <= 0 {
		c.rise = DefaultRise
	}
	return c
}

type checkKey struct{ vip, backend string }

// backendCheck is one (VIP, backend) probe loop and its damped state.
type backendCheck struct {
	spec   checkSpec
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	state  string
	probes int
}

func (c *backendCheck) health() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// HealthCheckerConfig names the node in its reports.
type HealthCheckerConfig struct {
	Cluster  string
	Node     string
	Reporter Reporter
	Logger   *slog.Logger
	// ReportResend is DefaultReportResend when zero.
	ReportResend time.Duration
}

// HealthChecker probes every backend of every VIP from this node and
// reports damped changes. It only reports: taking a backend out is the VIP
// workflow's decision, made for all nodes at once.
type HealthChecker struct {
	cfg HealthCheckerConfig
	log *slog.Logger

	mu     sync.Mutex
	checks map[checkKey]*backendCheck
	closed bool
}

// NewHealthChecker starts with no checks.
func NewHealthChecker(cfg HealthCheckerConfig) *HealthChecker {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ReportResend <= 0 {
		cfg.ReportResend = DefaultReportResend
	}
	return &HealthChecker{cfg: cfg, log: log, checks: map[checkKey]*backendCheck{}}
}

// Set makes the VIP's checks match spec: a check per backend when the spec
// has a health check, none otherwise. A backend whose check did not change
// keeps its loop and its damped state.
func (h *HealthChecker) Set(spec lbapi.VIPSpec) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	want := map[string]checkSpec{}
	if spec.HealthCheck != nil && len(spec.Ports) > 0 {
		cs := resolveCheck(*spec.HealthCheck, spec.Ports[0])
		for _, b := range spec.Backends {
			want[b.Address] = cs
		}
	}
	for k, c := range h.checks {
		if k.vip != spec.Name {
			continue
		}
		if cs, ok := want[k.backend]; ok && cs == c.spec {
			delete(want, k.backend)
			continue
		}
		h.stopLocked(k)
	}
	for backend, cs := range want {
		h.startLocked(checkKey{vip: spec.Name, backend: backend}, cs)
	}
}

// Remove stops every check of a VIP.
func (h *HealthChecker) Remove(vip string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range h.checks {
		if k.vip == vip {
			h.stopLocked(k)
		}
	}
}

// Health is a backend's damped health for a VIP: HealthUp, HealthDown, or
// HealthUnknown when it is not checked or has not settled yet.
func (h *HealthChecker) Health(vip, backend string) string {
	h.mu.Lock()
	c, ok := h.checks[checkKey{vip: vip, backend: backend}]
	h.mu.Unlock()
	if !ok {
		return HealthUnknown
	}
	return c.health()
}

// probeCount is how many probes a backend's check has run.
func (h *HealthChecker) probeCount(vip, backend string) int {
	h.mu.Lock()
	c, ok := h.checks[checkKey{vip: vip, backend: backend}]
	h.mu.Unlock()
	if !ok {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.probes
}

// Close stops every check and waits for the loops to end.
func (h *HealthChecker) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for k := range h.checks {
		h.stopLocked(k)
	}
}

func (h *HealthChecker) stopLocked(k checkKey) {
	c := h.checks[k]
	delete(h.checks, k)
	c.cancel()
	<-c.done
}

func (h *HealthChecker) startLocked(k checkKey, cs checkSpec) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &backendCheck{spec: cs, cancel: cancel, done: make(chan struct{}), state: HealthUnknown}
	h.checks[k] = c
	go h.loop(ctx, k, c)
}

// loop probes one backend until cancelled. The first probe runs at once, so
// a new backend's health is known after Rise or Fall probes, not one
// interval later. A report that could not be delivered is sent again
// until it is, unless a newer verdict replaces it.
func (h *HealthChecker) loop(ctx context.Context, k checkKey, c *backendCheck) {
	defer close(c.done)
	t := time.NewTicker(c.spec.interval)
	defer t.Stop()
	resend := time.NewTimer(h.cfg.ReportResend)
	resend.Stop()
	defer resend.Stop()
	var pending *lbapi.BackendHealthChange
	deliver := func() {
		if h.deliver(ctx, *pending) {
			pending = nil
			resend.Stop()
			return
		}
		resend.Reset(h.cfg.ReportResend)
	}
	var successes, failures int
	for {
		r := probe(ctx, k.backend, c.spec)
		if ctx.Err() != nil {
			return
		}
		if r.err == nil {
			successes, failures = successes+1, 0
		} else {
			successes, failures = 0, failures+1
		}
		c.mu.Lock()
		c.probes++
		prev := c.state
		next := prev
		switch {
		case prev != HealthUp && successes >= c.spec.rise:
			next = HealthUp
		case prev != HealthDown && failures >= c.spec.fall:
			next = HealthDown
		}
		c.state = next
		c.mu.Unlock()
		if next != prev {
			change := h.change(k, next == HealthUp, r)
			pending = &change
			deliver()
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-resend.C:
				if pending != nil {
					deliver()
				}
			case <-t.C:
				break wait
			}
		}
	}
}

// change is one damped verdict. Every change is reported, the first
// verdict on a backend included: after a restart the workflow may be
// holding a backend out that has recovered meanwhile.
func (h *HealthChecker) change(k checkKey, healthy bool, r probeResult) lbapi.BackendHealthChange {
	change := lbapi.BackendHealthChange{
		VIP: k.vip, Backend: k.backend, Healthy: healthy,
		Cluster: h.cfg.Cluster, Node: h.cfg.Node, At: time.Now().UTC(),
	}
	if r.err != nil {
		change.Reason = r.err.Error()
	}
	h.log.Info("backend health changed", "vip", k.vip, "backend", k.backend, "healthy", healthy, "reason", change.Reason)
	return change
}

// deliver sends one change to the reporter and says whether it arrived.
func (h *HealthChecker) deliver(ctx context.Context, change lbapi.BackendHealthChange) bool {
	if h.cfg.Reporter == nil {
		return true
	}
	rctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	if err := h.cfg.Reporter.ReportBackendHealth(rctx, change); err != nil {
		if ctx.Err() == nil {
			h.log.Warn("reporting backend health; sending it again later", "vip", change.VIP, "backend", change.Backend,
				"healthy", change.Healthy, "resend", h.cfg.ReportResend, "err", err)
		}
		return false
	}
	return true
}

package agent

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// shutdownTimeout bounds the withdrawals and the last heartbeat of a node
// that is stopping.
const shutdownTimeout = 30 * time.Second

// TaskQueue is the queue this node's worker polls.
func (a *Agent) TaskQueue() string { return lbapi.TaskQueue(a.cfg.Cluster, a.cfg.NodeName) }

// Register adds the node's activities under their lbapi names.
func (a *Agent) Register(r worker.ActivityRegistry) {
	r.RegisterActivityWithOptions(a.ApplyVIP, activity.RegisterOptions{Name: lbapi.ApplyVIPName})
	r.RegisterActivityWithOptions(a.RemoveVIP, activity.RegisterOptions{Name: lbapi.RemoveVIPName})
	r.RegisterActivityWithOptions(a.NodeReport, activity.RegisterOptions{Name: lbapi.NodeReportName})
	r.RegisterActivityWithOptions(a.ProbeBackend, activity.RegisterOptions{Name: lbapi.ProbeBackendName})
	r.RegisterActivityWithOptions(a.ProbeVIP, activity.RegisterOptions{Name: lbapi.ProbeVIPName})
}

// Run polls the node's task queue and heartbeats to the registry until ctx
// ends. Then it withdraws every route, sends a last heartbeat saying the
// node is stopping, and stops the worker. The data plane keeps forwarding
// what is still routed to it; a restarted agent adopts it.
func (a *Agent) Run(ctx context.Context, c client.Client) error {
	w := worker.New(c, a.TaskQueue(), worker.Options{})
	a.Register(w)
	if err := w.Start(); err != nil {
		return err
	}
	a.log.Info("lbnode worker polling", "taskQueue", a.TaskQueue(), "registry", a.cfg.MainTaskQueue)

	a.heartbeat(ctx, c)
	vips := TemporalVIPWorkflows{Client: c}
	a.removeUnwanted(ctx, vips)
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	r := time.NewTicker(a.cfg.ReconcileInterval)
	defer r.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			a.heartbeat(ctx, c)
		case <-r.C:
			a.removeUnwanted(ctx, vips)
		}
	}

	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	if err := a.Shutdown(sctx); err != nil {
		errs = append(errs, err)
	}
	if err := a.register(sctx, c, true); err != nil {
		errs = append(errs, err)
	}
	w.Stop()
	a.log.Info("lbnode worker stopped; the data plane stays attached")
	return errors.Join(errs...)
}

// removeUnwanted is RemoveUnwanted with its failures logged: they are tried
// again at the next reconcile.
func (a *Agent) removeUnwanted(ctx context.Context, w VIPWorkflows) {
	rctx, cancel := context.WithTimeout(ctx, a.cfg.HeartbeatInterval)
	defer cancel()
	if _, err := a.RemoveUnwanted(rctx, w); err != nil && ctx.Err() == nil {
		a.log.Warn("removing VIPs no workflow wants here", "err", err)
	}
}

// heartbeat registers the node; a failure is logged and retried on the next
// tick, since the node serves its VIPs whether metalflow hears it or not.
func (a *Agent) heartbeat(ctx context.Context, c client.Client) {
	hctx, cancel := context.WithTimeout(ctx, a.cfg.HeartbeatInterval)
	defer cancel()
	if err := a.register(hctx, c, false); err != nil && ctx.Err() == nil {
		a.log.Warn("registering the node", "err", err)
	}
}

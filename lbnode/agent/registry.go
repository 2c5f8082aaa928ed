package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// TemporalReporter signals backend health changes to the VIP's workflow.
type TemporalReporter struct {
	Client client.Client
	Logger *slog.Logger
}

// ReportBackendHealth signals lbapi.SignalBackendHealth to the VIP's
// workflow. A VIP without a running workflow (deleted, or not created by
// metalflow) has nobody to tell: that is logged, not an error.
func (r TemporalReporter) ReportBackendHealth(ctx context.Context, change lbapi.BackendHealthChange) error {
	err := r.Client.SignalWorkflow(ctx, lbapi.VIPWorkflowID(change.VIP), "", lbapi.SignalBackendHealth, change)
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		if r.Logger != nil {
			r.Logger.Warn("no workflow for the VIP to report backend health to", "vip", change.VIP,
				"workflow", lbapi.VIPWorkflowID(change.VIP), "backend", change.Backend, "healthy", change.Healthy)
		}
		return nil
	}
	return err
}

// Heartbeat is what the node tells the registry now.
func (a *Agent) Heartbeat(stopping bool) lbapi.NodeHeartbeat {
	a.mu.Lock()
	defer a.mu.Unlock()
	return lbapi.NodeHeartbeat{
		Cluster: a.cfg.Cluster, Node: a.cfg.NodeName, FailureDomain: a.cfg.FailureDomain,
		Capacity: a.cfg.Capacity, VIPs: len(a.vips), Healthy: a.healthy,
		At: time.Now().UTC(), Stopping: stopping,
	}
}

// register signals the heartbeat to the node's registry workflow, starting
// the workflow if it does not run. The heartbeat is also the start input,
// so a registry started by this signal knows the node from its first event.
func (a *Agent) register(ctx context.Context, c client.Client, stopping bool) error {
	if a.cfg.MainTaskQueue == "" {
		return errors.New("agent: no main task queue to register on")
	}
	hb := a.Heartbeat(stopping)
	id := lbapi.RegistryWorkflowID(a.cfg.Cluster, a.cfg.NodeName)
	_, err := c.SignalWithStartWorkflow(ctx, id, lbapi.SignalHeartbeat, hb,
		client.StartWorkflowOptions{ID: id, TaskQueue: a.cfg.MainTaskQueue},
		lbapi.RegistryWorkflowName, hb)
	if err != nil {
		return fmt.Errorf("heartbeat to %s: %w", id, err)
	}
	return nil
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// VIPWorkflows says whether the workflow that owns a VIP wants it on a
// node.
type VIPWorkflows interface {
	Wants(ctx context.Context, vip, cluster, node string) (bool, error)
}

// TemporalVIPWorkflows asks Temporal about a VIP's workflow.
type TemporalVIPWorkflows struct {
	Client client.Client
}

// Wants is false when the VIP's latest run is closed (retired, rejected,
// aborted, terminated) or answers lbapi.QueryWantsNode with false. A
// workflow Temporal does not know at all, or one that does not answer the
// query (an older metalflow), is taken as wanting it: a Temporal that lost
// its data, or a node pointed at the wrong namespace, must not take every
// VIP down.
func (w TemporalVIPWorkflows) Wants(ctx context.Context, vip, cluster, node string) (bool, error) {
	id := lbapi.VIPWorkflowID(vip)
	d, err := w.Client.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		return false, nil
	}
	v, err := w.Client.QueryWorkflow(ctx, id, "", lbapi.QueryWantsNode, lbapi.WantsNodeInput{Cluster: cluster, Node: node})
	var queryFailed *serviceerror.QueryFailed
	if errors.As(err, &queryFailed) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	var wants bool
	if err := v.Get(&wants); err != nil {
		return false, err
	}
	return wants, nil
}

// RemoveUnwanted removes the VIPs whose workflow has ended or no longer
// wants them on this node: a VIP retired while this node was down or
// unreachable was never removed here, and the node would go on announcing
// it after a restart. It returns the VIPs removed; a VIP it could not ask
// about is kept.
func (a *Agent) RemoveUnwanted(ctx context.Context, w VIPWorkflows) ([]string, error) {
	names := make([]string, 0)
	for name := range a.Specs() {
		names = append(names, name)
	}
	slices.Sort(names)
	var removed []string
	var errs []error
	for _, name := range names {
		wants, err := w.Wants(ctx, name, a.cfg.Cluster, a.cfg.NodeName)
		if err != nil {
			errs = append(errs, fmt.Errorf("VIP %s: asking its workflow: %w", name, err))
			continue
		}
		if wants {
			continue
		}
		a.log.Info("removing a VIP its workflow does not want here", "vip", name, "workflow", lbapi.VIPWorkflowID(name))
		if _, err := a.RemoveVIP(ctx, lbapi.RemoveVIPInput{Name: name}); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

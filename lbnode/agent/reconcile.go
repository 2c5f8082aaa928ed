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

// VIPWorkflows says whether the workflow that owns a VIP has ended.
type VIPWorkflows interface {
	Ended(ctx context.Context, vip string) (bool, error)
}

// TemporalVIPWorkflows asks Temporal about a VIP's workflow.
type TemporalVIPWorkflows struct {
	Client client.Client
}

// Ended is true when the VIP's latest run is closed (retired, rejected,
// aborted, terminated). A workflow Temporal does not know at all is not
// taken as ended: a Temporal that lost its data, or an operator pointing
// the node at the wrong namespace, must not take every VIP down.
func (w TemporalVIPWorkflows) Ended(ctx context.Context, vip string) (bool, error) {
	d, err := w.Client.DescribeWorkflowExecution(ctx, lbapi.VIPWorkflowID(vip), "")
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return d.GetWorkflowExecutionInfo().GetStatus() != enums.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
}

// RemoveEnded removes the VIPs whose workflow has ended: a VIP retired
// while this node was down or unreachable was never removed here, and the
// node would go on announcing it after a restart. It returns the VIPs
// removed; a VIP it could not ask about is kept.
func (a *Agent) RemoveEnded(ctx context.Context, w VIPWorkflows) ([]string, error) {
	names := make([]string, 0)
	for name := range a.Specs() {
		names = append(names, name)
	}
	slices.Sort(names)
	var removed []string
	var errs []error
	for _, name := range names {
		ended, err := w.Ended(ctx, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("VIP %s: asking for its workflow: %w", name, err))
			continue
		}
		if !ended {
			continue
		}
		a.log.Info("removing a VIP whose workflow has ended", "vip", name, "workflow", lbapi.VIPWorkflowID(name))
		if _, err := a.RemoveVIP(ctx, lbapi.RemoveVIPInput{Name: name}); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

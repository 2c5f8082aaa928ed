package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/workflows"
)

// LifecycleWatch reads lifecycles from Temporal for other workflows.
type LifecycleWatch struct {
	Client client.Client
	// Poll is how often a running lifecycle is looked at (default 1 s).
	Poll time.Duration
}

// Register registers the watch's activities under their stable names.
func (w *LifecycleWatch) Register(r interface {
	RegisterActivityWithOptions(a interface{}, options activity.RegisterOptions)
}) {
	r.RegisterActivityWithOptions(w.AwaitLifecycleEnd, activity.RegisterOptions{Name: workflows.AwaitLifecycleEndName})
}

// AwaitLifecycleEnd waits until a lifecycle has closed, heartbeating, and
// reports how far it had got. A serial with no lifecycle at all is not
// something waiting fixes: that is a non-retryable error.
func (w *LifecycleWatch) AwaitLifecycleEnd(ctx context.Context, in workflows.AwaitLifecycleEndInput) (workflows.LifecycleEnd, error) {
	id := workflows.LifecycleWorkflowID(in.Serial)
	poll := w.Poll
	if poll <= 0 {
		poll = time.Second
	}
	for {
		d, err := w.Client.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return workflows.LifecycleEnd{}, temporal.NewNonRetryableApplicationError("no lifecycle for "+in.Serial, "NotFound", err)
		}
		if err != nil {
			return workflows.LifecycleEnd{}, err
		}
		if d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			break
		}
		activity.RecordHeartbeat(ctx, "lifecycle still running")
		select {
		case <-ctx.Done():
			return workflows.LifecycleEnd{}, ctx.Err()
		case <-time.After(poll):
		}
	}
	v, err := w.Client.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err != nil {
		return workflows.LifecycleEnd{}, fmt.Errorf("read the final status of %s: %w", id, err)
	}
	var st workflows.ServerStatus
	if err := v.Get(&st); err != nil {
		return workflows.LifecycleEnd{}, fmt.Errorf("decode the final status of %s: %w", id, err)
	}
	return workflows.LifecycleEndOf(st), nil
}

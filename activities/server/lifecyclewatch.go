package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// LifecycleReader is what the watch asks Temporal; client.Client does it.
type LifecycleReader interface {
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
	QueryWorkflow(ctx context.Context, workflowID, runID, queryType string, args ...interface{}) (converter.EncodedValue, error)
}

// LifecycleWatch reads lifecycles from Temporal for other workflows (the
// decommission waits for the lifecycle it cancelled).
type LifecycleWatch struct {
	Client LifecycleReader
	// Poll is how often a running lifecycle is looked at (default 1 s).
	Poll time.Duration
}

// Register registers the watch's activities under their stable names.
func (w *LifecycleWatch) Register(r activities.Registrar) {
	r.RegisterActivityWithOptions(w.AwaitLifecycleEnd, activity.RegisterOptions{Name: serverapi.AwaitLifecycleEndName})
}

// AwaitLifecycleEnd waits until a lifecycle has closed, heartbeating, and
// reports how far it had got. A serial with no lifecycle at all is not
// something waiting fixes: that is a non-retryable error.
func (w *LifecycleWatch) AwaitLifecycleEnd(ctx context.Context, in serverapi.AwaitLifecycleEndInput) (serverapi.LifecycleEnd, error) {
	id := serverapi.LifecycleWorkflowID(in.Serial)
	poll := w.Poll
	if poll <= 0 {
		poll = time.Second
	}
	for {
		d, err := w.Client.DescribeWorkflowExecution(ctx, id, "")
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return serverapi.LifecycleEnd{}, temporal.NewNonRetryableApplicationError("no lifecycle for "+in.Serial, stepapi.ErrTypeNotFound, err)
		}
		if err != nil {
			return serverapi.LifecycleEnd{}, err
		}
		if d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			break
		}
		activity.RecordHeartbeat(ctx, "lifecycle still running")
		select {
		case <-ctx.Done():
			return serverapi.LifecycleEnd{}, ctx.Err()
		case <-time.After(poll):
		}
	}
	v, err := w.Client.QueryWorkflow(ctx, id, "", stepapi.QueryStatus)
	if err != nil {
		return serverapi.LifecycleEnd{}, fmt.Errorf("read the final status of %s: %w", id, err)
	}
	var st serverapi.ServerStatus
	if err := v.Get(&st); err != nil {
		return serverapi.LifecycleEnd{}, fmt.Errorf("decode the final status of %s: %w", id, err)
	}
	return serverapi.LifecycleEndOf(st), nil
}

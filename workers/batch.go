package workers

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/workflows"
)

// BatchActivities are the RackBatch's own activities: it reads its
// servers' states through Temporal, the same way the API does.
type BatchActivities struct {
	Client client.Client
}

// Register registers the batch's activities under their stable names.
func (a *BatchActivities) Register(r interface {
	RegisterActivityWithOptions(a interface{}, options activity.RegisterOptions)
}) {
	r.RegisterActivityWithOptions(a.ServerStates, activity.RegisterOptions{Name: workflows.ServerStatesName})
}

// ServerStates queries each lifecycle's status. A lifecycle that cannot be
// read (closed, or its worker busy) is left out: the batch learns how a
// closed one ended from the child result, and asks again at the next poll.
func (a *BatchActivities) ServerStates(ctx context.Context, in workflows.ServerStatesInput) (workflows.ServerStatesResult, error) {
	res := workflows.ServerStatesResult{Servers: []workflows.ServerStateReport{}}
	var firstErr error
	for _, serial := range in.Serials {
		v, err := a.Client.QueryWorkflow(ctx, workflows.LifecycleWorkflowID(serial), "", workflows.QueryStatus)
		if err != nil {
			var nf *serviceerror.NotFound
			if !errors.As(err, &nf) && firstErr == nil {
				firstErr = err
			}
			continue
		}
		var st workflows.ServerStatus
		if err := v.Get(&st); err != nil {
			return res, fmt.Errorf("decode status of %s: %w", serial, err)
		}
		r := workflows.ServerStateReport{Serial: serial, State: st.State, Step: st.Step}
		if st.Attention != nil {
			r.Error = st.Attention.Error
		}
		res.Servers = append(res.Servers, r)
	}
	if len(res.Servers) == 0 && firstErr != nil {
		// Nothing could be read: let Temporal retry the whole read.
		return res, firstErr
	}
	return res, nil
}

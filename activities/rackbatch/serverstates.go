// Package rackbatch runs the RackBatch's own activities: it reads its
// servers' states through Temporal, the same way the API does.
package rackbatch

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// LifecycleQuerier asks a running lifecycle a query; client.Client does.
type LifecycleQuerier interface {
	QueryWorkflow(ctx context.Context, workflowID, runID, queryType string, args ...interface{}) (converter.EncodedValue, error)
}

// ServerWatch reads the batch's servers' lifecycles.
type ServerWatch struct {
	Client LifecycleQuerier
}

// Register registers the batch's activities under their stable names.
func (a *ServerWatch) Register(r activities.Registrar) {
	r.RegisterActivityWithOptions(a.ServerStates, activity.RegisterOptions{Name: batchapi.ServerStatesName})
}

// ServerStates queries each lifecycle's status. A lifecycle that cannot be
// read (closed, or its worker busy) is left out: the batch learns how a
// closed one ended from the child result, and asks again at the next poll.
func (a *ServerWatch) ServerStates(ctx context.Context, in batchapi.ServerStatesInput) (batchapi.ServerStatesResult, error) {
	res := batchapi.ServerStatesResult{Servers: []batchapi.ServerStateReport{}}
	var firstErr error
	for _, serial := range in.Serials {
		v, err := a.Client.QueryWorkflow(ctx, serverapi.LifecycleWorkflowID(serial), "", stepapi.QueryStatus)
		if err != nil {
			var nf *serviceerror.NotFound
			if !errors.As(err, &nf) && firstErr == nil {
				firstErr = err
			}
			continue
		}
		var st serverapi.ServerStatus
		if err := v.Get(&st); err != nil {
			return res, fmt.Errorf("decode status of %s: %w", serial, err)
		}
		r := batchapi.ServerStateReport{Serial: serial, State: st.State, Step: st.Step}
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

package rackbatch

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"

	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// lifecycles answer status queries by workflow ID: a status, or an error;
// an ID with neither has no lifecycle.
type lifecycles map[string]any

func (l lifecycles) QueryWorkflow(_ context.Context, id, _, query string, _ ...interface{}) (converter.EncodedValue, error) {
	if query != stepapi.QueryStatus {
		return nil, errors.New("unknown query " + query)
	}
	switch v := l[id].(type) {
	case nil:
		return nil, serviceerror.NewNotFound("workflow not found")
	case error:
		return nil, v
	default:
		return answer{v}, nil
	}
}

type answer struct{ v any }

func (a answer) HasValue() bool { return true }

func (a answer) Get(ptr interface{}) error {
	b, err := json.Marshal(a.v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, ptr)
}

// The batch hears about every lifecycle it can read; one it cannot (gone,
// or busy) is left for the next poll, unless none could be read at all.
func TestServerStatesLeavesOutWhatCannotBeRead(t *testing.T) {
	busy := errors.New("context deadline exceeded")
	w := &ServerWatch{Client: lifecycles{
		serverapi.LifecycleWorkflowID("SN-1"): serverapi.ServerStatus{State: serverapi.StateProvisioning, Step: serverapi.StepConfigureBIOS},
		serverapi.LifecycleWorkflowID("SN-2"): serverapi.ServerStatus{State: serverapi.StateAttention, Step: serverapi.StepInspect,
			Attention: &stepapi.Attention{Step: serverapi.StepInspect, Error: "hardware does not meet profile"}},
		serverapi.LifecycleWorkflowID("SN-3"): busy,
	}}
	ctx := context.Background()

	res, err := w.ServerStates(ctx, batchapi.ServerStatesInput{Serials: []string{"SN-1", "SN-2", "SN-3", "SN-404"}})
	require.NoError(t, err)
	require.Equal(t, []batchapi.ServerStateReport{
		{Serial: "SN-1", State: serverapi.StateProvisioning, Step: serverapi.StepConfigureBIOS},
		{Serial: "SN-2", State: serverapi.StateAttention, Step: serverapi.StepInspect, Error: "hardware does not meet profile"},
	}, res.Servers)

	_, err = w.ServerStates(ctx, batchapi.ServerStatesInput{Serials: []string{"SN-3", "SN-404"}})
	require.ErrorIs(t, err, busy, "nothing read: Temporal retries the whole read")

	res, err = w.ServerStates(ctx, batchapi.ServerStatesInput{Serials: []string{"SN-404"}})
	require.NoError(t, err, "no lifecycle is an answer, not an outage")
	require.Empty(t, res.Servers)
}

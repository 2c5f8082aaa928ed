package workflows

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

type updateOutcome struct {
	rejected error
	err      error
	result   RackedResult
	done     bool
}

func (o *updateOutcome) callbacks() *testsuite.TestUpdateCallback {
	return &testsuite.TestUpdateCallback{
		OnReject: func(err error) { o.rejected = err; o.done = true },
		OnAccept: func() {},
		OnComplete: func(v interface{}, err error) {
			o.done = true
			o.err = err
			if r, ok := v.(RackedResult); ok {
				o.result = r
			}
		},
	}
}

func newEnv(t *testing.T) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ServerLifecycle, workflowOptions(ServerLifecycleName))
	t.Cleanup(func() { env.AssertExpectations(t) })
	return env
}

func queryStatus(t *testing.T, env *testsuite.TestWorkflowEnvironment) ServerStatus {
	t.Helper()
	v, err := env.QueryWorkflow(QueryStatus)
	require.NoError(t, err)
	var st ServerStatus
	require.NoError(t, v.Get(&st))
	return st
}

func TestLifecycleWaitsForRackedThenRecordsLocation(t *testing.T) {
	env := newEnv(t)
	loc := Location{Site: "dc1", Room: "A", Rack: "R07", Unit: 12, Face: FaceFront}
	var before ServerStatus
	var bad, good updateOutcome
	env.RegisterDelayedCallback(func() {
		before = queryStatus(t, env)
		env.UpdateWorkflow(UpdateRacked, "bad", bad.callbacks(), Location{Site: "dc1", Rack: "R07", Unit: 0, Face: "side"})
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateRacked, "good", good.callbacks(), loc)
	}, 2*time.Hour)

	// The Web UI filters on these: the rack once known, then the end state.
	env.OnUpsertTypedSearchAttributes(temporal.NewSearchAttributes(rackKey().ValueSet("R07"))).Return(nil).Once()
	env.OnUpsertTypedSearchAttributes(temporal.NewSearchAttributes(lifecycleStepKey().ValueSet(StateRacked))).Return(nil).Once()

	env.ExecuteWorkflow(ServerLifecycleName, ServerLifecycleInput{Serial: "SN-0001"})

	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, StateWaitingRack, before.State)
	require.Equal(t, StepRack, before.Step)
	require.Equal(t, StepWaiting, before.Steps[0].Status)
	require.NotNil(t, before.Steps[0].StartedAt)
	require.Nil(t, before.Location)

	require.Error(t, bad.rejected, "an invalid location must be rejected by the validator")
	require.Contains(t, bad.rejected.Error(), "unit must be 1 or more")
	require.Contains(t, bad.rejected.Error(), `face must be "front" or "rear"`)

	require.True(t, good.done)
	require.NoError(t, good.rejected)
	require.NoError(t, good.err)
	require.Equal(t, RackedResult{Serial: "SN-0001", Location: loc}, good.result)

	var final ServerStatus
	require.NoError(t, env.GetWorkflowResult(&final))
	require.Equal(t, StateRacked, final.State)
	require.Equal(t, &loc, final.Location)
	require.Equal(t, StepDone, final.Steps[0].Status)
	// The step lasted from the start until the second update, two hours of
	// workflow time later.
	require.Equal(t, 2*time.Hour, final.Steps[0].FinishedAt.Sub(*final.Steps[0].StartedAt))

}

func TestLifecycleRegisteredAlreadyRackedDoesNotWait(t *testing.T) {
	env := newEnv(t)
	loc := Location{Site: "dc1", Rack: "R01", Unit: 1, Face: FaceRear}
	env.ExecuteWorkflow(ServerLifecycleName, ServerLifecycleInput{Serial: "SN-2", Location: &loc})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var final ServerStatus
	require.NoError(t, env.GetWorkflowResult(&final))
	require.Equal(t, StateRacked, final.State)
	require.Equal(t, &loc, final.Location)
	require.Zero(t, final.Steps[0].FinishedAt.Sub(*final.Steps[0].StartedAt))
}

func TestLifecycleRefusesSecondRacked(t *testing.T) {
	// While the lifecycle runs on after Rack, a second racked update must be
	// refused by the validator (and by the handler, for two updates that
	// arrive in the same workflow task).
	first := Location{Site: "dc1", Rack: "R01", Unit: 3, Face: FaceFront}
	l := newLifecycle(ServerLifecycleInput{Serial: "SN-3", Location: &first})
	err := l.validateRacked(Location{Site: "dc1", Rack: "R02", Unit: 4, Face: FaceFront})
	require.Error(t, err)
	require.Contains(t, err.Error(), "already racked at dc1/R01 U3")
	require.Equal(t, &first, l.racked)
}

func TestLifecycleRefusesInvalidSerial(t *testing.T) {
	env := newEnv(t)
	env.ExecuteWorkflow(ServerLifecycleName, ServerLifecycleInput{Serial: "has space"})
	err := env.GetWorkflowError()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr))
	require.True(t, appErr.NonRetryable())
	require.Equal(t, "InvalidInput", appErr.Type())
}

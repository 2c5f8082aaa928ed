package workflows

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/metalflow/metalflow/activities"
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
	// Stand-ins under the real names; each test says what they answer.
	env.RegisterActivityWithOptions(func(context.Context, activities.RackServerInput) error { return nil },
		activity.RegisterOptions{Name: activities.RackServerName})
	t.Cleanup(func() { env.AssertExpectations(t) })
	return env
}

func rackInput(serial string, loc Location, actor string) activities.RackServerInput {
	return activities.RackServerInput{Serial: serial, Site: loc.Site, Room: loc.Room, Rack: loc.Rack, Unit: loc.Unit,
		Face: loc.Face, HeightU: 1, Actor: actor}
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
		env.UpdateWorkflow(UpdateRacked, "bad", bad.callbacks(), RackedInput{Location: Location{Site: "dc1", Rack: "R07", Unit: 0, Face: "side"}})
	}, time.Hour)
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateRacked, "good", good.callbacks(), RackedInput{Location: loc, By: "tech-7"})
	}, 2*time.Hour)

	env.OnActivity(activities.RackServerName, mock.Anything, rackInput("SN-0001", loc, "tech-7")).Return(nil).Once()
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
	env.OnActivity(activities.RackServerName, mock.Anything, rackInput("SN-2", loc, "registration")).Return(nil).Once()
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
	err := l.validateRacked(RackedInput{Location: Location{Site: "dc1", Rack: "R02", Unit: 4, Face: FaceFront}})
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

func TestLifecycleOccupiedUnitRefusesUpdateAndKeepsWaiting(t *testing.T) {
	env := newEnv(t)
	taken := Location{Site: "dc1", Rack: "R01", Unit: 5, Face: FaceFront}
	free := Location{Site: "dc1", Rack: "R01", Unit: 6, Face: FaceFront}
	env.OnActivity(activities.RackServerName, mock.Anything, rackInput("SN-4", taken, "technician")).
		Return(temporal.NewNonRetryableApplicationError("rack unit occupied: unit 5 of rack dc1/R01 holds server SN-9",
			activities.ErrTypeUnitOccupied, nil)).Once()
	env.OnActivity(activities.RackServerName, mock.Anything, rackInput("SN-4", free, "technician")).Return(nil).Once()
	var first, second updateOutcome
	var between ServerStatus
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateRacked, "1", first.callbacks(), RackedInput{Location: taken})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		between = queryStatus(t, env)
		env.UpdateWorkflow(UpdateRacked, "2", second.callbacks(), RackedInput{Location: free})
	}, 2*time.Minute)
	env.ExecuteWorkflow(ServerLifecycleName, ServerLifecycleInput{Serial: "SN-4"})
	require.NoError(t, env.GetWorkflowError())

	require.NoError(t, first.rejected, "the validator cannot know the unit is taken")
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(first.err, &appErr), "got %v", first.err)
	require.Equal(t, activities.ErrTypeUnitOccupied, appErr.Type())
	require.Contains(t, appErr.Message(), "holds server SN-9")

	require.Equal(t, StateWaitingRack, between.State, "a refused update changes nothing")
	require.Nil(t, between.Location)

	require.NoError(t, second.err)
	var final ServerStatus
	require.NoError(t, env.GetWorkflowResult(&final))
	require.Equal(t, &free, final.Location)
}

func TestLifecycleRemindsDailyWhileUnracked(t *testing.T) {
	env := newEnv(t)
	loc := Location{Site: "dc1", Rack: "R03", Unit: 1, Face: FaceFront}
	env.OnActivity(activities.RackServerName, mock.Anything, mock.Anything).Return(nil).Once()
	var at50h ServerStatus
	var done updateOutcome
	env.RegisterDelayedCallback(func() {
		at50h = queryStatus(t, env)
		env.UpdateWorkflow(UpdateRacked, "r", done.callbacks(), RackedInput{Location: loc})
	}, 50*time.Hour)
	env.ExecuteWorkflow(ServerLifecycleName, ServerLifecycleInput{Serial: "SN-5"})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, 2, at50h.RackReminders, "one nudge per day waited")
	require.Equal(t, StepWaiting, at50h.Steps[0].Status)
	require.NoError(t, done.err)
}

func TestLifecycleRegisteredIntoTakenUnitFails(t *testing.T) {
	env := newEnv(t)
	loc := Location{Site: "dc1", Rack: "R01", Unit: 1, Face: FaceRear}
	env.OnActivity(activities.RackServerName, mock.Anything, mock.Anything).
		Return(temporal.NewNonRetryableApplicationError("occupied", activities.ErrTypeUnitOccupied, nil)).Once()
	env.ExecuteWorkflow(ServerLifecycleName, ServerLifecycleInput{Serial: "SN-6", Location: &loc})
	require.Error(t, env.GetWorkflowError())
	require.Contains(t, env.GetWorkflowError().Error(), "occupied")
}

package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"

	"github.com/metalflow/metalflow/activities"
)

// registerDecommission adds stand-ins for the decommission's activities.
// The cloud ones answer skipped without ironic/nova, as the real ones do.
func (f *fakeProvisioning) registerDecommission(env *testsuite.TestWorkflowEnvironment) {
	reg := func(name string, fn any) { env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	for _, name := range []string{activities.WipeServerName, activities.ResetBIOSDefaultsName, activities.PowerOffServerName, activities.RetireAssetName} {
		reg(name, func(_ context.Context, in activities.DecommissionStepInput) (activities.DecommissionStepResult, error) {
			return activities.DecommissionStepResult{Note: name + " done"}, f.record(name, in)
		})
	}
	reg(activities.LeaveAggregateName, func(_ context.Context, in activities.DecommissionStepInput) (activities.DecommissionStepResult, error) {
		if err := f.record(activities.LeaveAggregateName, in); err != nil || !f.nova {
			return activities.DecommissionStepResult{Skipped: !f.nova, Note: activities.NoteNoNova}, err
		}
		return activities.DecommissionStepResult{}, nil
	})
	reg(activities.DeleteCloudNodeName, func(_ context.Context, in activities.DecommissionStepInput) (activities.DecommissionStepResult, error) {
		if err := f.record(activities.DeleteCloudNodeName, in); err != nil || !f.ironic {
			return activities.DecommissionStepResult{Skipped: !f.ironic, Note: activities.NoteNoIronic}, err
		}
		return activities.DecommissionStepResult{}, nil
	})
	reg(activities.ReleaseRackUnitName, func(_ context.Context, in activities.ReleaseRackUnitInput) error {
		return f.record(activities.ReleaseRackUnitName, in)
	})
	reg(activities.LeaveLoadBalancerName, func(_ context.Context, in activities.LoadBalancerMembershipInput) error {
		return f.record(activities.LeaveLoadBalancerName, in)
	})
}

func newDecommissionTest(t *testing.T) *lifecycleTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Decommission, workflowOptions(DecommissionName))
	f := newFake()
	f.registerDecommission(env)
	return &lifecycleTest{t: t, env: env, fake: f}
}

func decommissionInput(serial, role string) DecommissionInput {
	loc := dock
	return DecommissionInput{Serial: serial, Role: role, Location: &loc,
		BMC: &activities.BMCRef{Address: "https://127.0.0.1:9443", CredentialRef: "cred-1"}}
}

func (lt *lifecycleTest) decommissionStatus() DecommissionStatus {
	lt.t.Helper()
	v, err := lt.env.QueryWorkflow(QueryStatus)
	require.NoError(lt.t, err)
	var st DecommissionStatus
	require.NoError(lt.t, v.Get(&st))
	return st
}

func stepByName(st DecommissionStatus, name string) StepStatus {
	for _, s := range st.Steps {
		if s.Name == name {
			return s
		}
	}
	return StepStatus{}
}

func TestDecommissionHappyPathWithCloud(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.fake.ironic, lt.fake.nova = true, true
	var late *updateOutcome
	var waiting DecommissionStatus
	lt.at(time.Hour, func() {
		waiting = lt.decommissionStatus()
		late = lt.update(UpdateUnracked, UnrackedInput{By: "tech-7"})
	})
	in := decommissionInput("SN-D1", "hypervisor")
	in.Host = "hv-1"
	lt.env.ExecuteWorkflow(DecommissionName, in)
	require.True(t, lt.env.IsWorkflowCompleted())
	require.NoError(t, lt.env.GetWorkflowError())
	var final DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))

	require.Equal(t, StateWaitingUnrack, waiting.State)
	require.Equal(t, StepUnrack, waiting.Step)
	require.NoError(t, late.refused())
	require.Equal(t, StateDecommissioned, final.State)
	for _, s := range final.Steps {
		require.Equal(t, StepDone, s.Status, s.Name)
	}
	require.Equal(t, []string{
		activities.LeaveAggregateName, activities.DeleteCloudNodeName, activities.WipeServerName, activities.ResetBIOSDefaultsName,
		activities.PowerOffServerName, activities.RetireAssetName, activities.ReleaseRackUnitName,
	}, lt.fake.calls)
	leave := lt.fake.inputs[activities.LeaveAggregateName][0].(activities.DecommissionStepInput)
	require.Equal(t, "hv-1", leave.Host)
	require.Equal(t, "R07", leave.Rack)
	release := lt.fake.inputs[activities.ReleaseRackUnitName][0].(activities.ReleaseRackUnitInput)
	require.Equal(t, "tech-7", release.Actor)
}

func TestDecommissionSkipsCloudStepsByConfig(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.at(time.Hour, func() { lt.update(UpdateUnracked, UnrackedInput{}) })
	lt.env.ExecuteWorkflow(DecommissionName, decommissionInput("SN-D2", "hypervisor"))
	require.NoError(t, lt.env.GetWorkflowError())
	var final DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))
	require.Equal(t, StepSkipped, stepByName(final, StepLeaveAggregate).Status)
	require.Equal(t, activities.NoteNoNova, stepByName(final, StepLeaveAggregate).Note)
	require.Equal(t, StepSkipped, stepByName(final, StepDeleteCloudNode).Status)
	require.Equal(t, activities.NoteNoIronic, stepByName(final, StepDeleteCloudNode).Note)
	require.Equal(t, StepDone, stepByName(final, StepSecureWipe).Status)
	require.Equal(t, StateDecommissioned, final.State)

	// A compute node was never in an aggregate: no Nova call at all.
	lt = newDecommissionTest(t)
	lt.fake.nova = true
	lt.at(time.Hour, func() { lt.update(UpdateUnracked, UnrackedInput{}) })
	lt.env.ExecuteWorkflow(DecommissionName, decommissionInput("SN-D3", "compute"))
	require.NoError(t, lt.env.GetWorkflowError())
	require.NoError(t, lt.env.GetWorkflowResult(&final))
	require.Equal(t, StepSkipped, stepByName(final, StepLeaveAggregate).Status)
	require.Contains(t, stepByName(final, StepLeaveAggregate).Note, "only hypervisors")
	require.Zero(t, lt.fake.count(activities.LeaveAggregateName))
}

func TestDecommissionAttentionAndRetry(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.fake.failNext(activities.WipeServerName, appErr("BMC refused the credential", activities.ErrTypeBMCAuth))
	var parked DecommissionStatus
	var badAbort, unrack, retry *updateOutcome
	lt.at(time.Minute, func() {
		parked = lt.decommissionStatus()
		badAbort = lt.update(UpdateAbort, AbortInput{})
		unrack = lt.update(UpdateUnracked, UnrackedInput{})
		retry = lt.update(UpdateRetry, RetryInput{BMC: &activities.BMCRef{CredentialRef: "cred-2"}, By: "ops"})
	})
	lt.at(time.Hour, func() { lt.update(UpdateUnracked, UnrackedInput{}) })
	lt.env.ExecuteWorkflow(DecommissionName, decommissionInput("SN-D4", "compute"))
	require.NoError(t, lt.env.GetWorkflowError())
	var final DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))

	require.Equal(t, StateAttention, parked.State)
	require.Equal(t, StepSecureWipe, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "refused the credential")
	require.ErrorContains(t, badAbort.refused(), "reason")
	require.ErrorContains(t, unrack.refused(), "not waiting to be unracked", "refused before the workflow waits for it")
	require.NoError(t, retry.refused())
	require.Equal(t, 2, lt.fake.count(activities.WipeServerName))
	second := lt.fake.inputs[activities.WipeServerName][1].(activities.DecommissionStepInput)
	require.Equal(t, "cred-2", second.BMC.CredentialRef)
	require.Equal(t, "https://127.0.0.1:9443", second.BMC.Address)
	first := lt.fake.inputs[activities.WipeServerName][0].(activities.DecommissionStepInput)
	require.NotEqual(t, first.Key, second.Key, "a retry is a new try: its history line and BIOS reset are its own")
	require.Equal(t, StateDecommissioned, final.State)
	require.Equal(t, StepDone, stepByName(final, StepSecureWipe).Status)
}

func TestDecommissionAbortInAttention(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.fake.failNext(activities.PowerOffServerName, appErr("BMC rejected the request", activities.ErrTypeBMCRejected))
	lt.at(time.Minute, func() { lt.update(UpdateAbort, AbortInput{Reason: "server sold as is", By: "ops"}) })
	lt.env.ExecuteWorkflow(DecommissionName, decommissionInput("SN-D5", "compute"))
	require.True(t, lt.env.IsWorkflowCompleted())
	require.ErrorContains(t, lt.env.GetWorkflowError(), "server sold as is")
	require.Zero(t, lt.fake.count(activities.RetireAssetName))
	require.Zero(t, lt.fake.count(activities.ReleaseRackUnitName))
}

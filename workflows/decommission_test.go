package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"
)

// registerDecommission adds stand-ins for the decommission's activities.
// The cloud ones answer skipped without ironic/nova, as the real ones do.
func (f *fakeProvisioning) registerDecommission(env *testsuite.TestWorkflowEnvironment) {
	reg := func(name string, fn any) { env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	for _, name := range []string{serverapi.WipeServerName, serverapi.ResetBIOSDefaultsName, serverapi.PowerOffServerName, serverapi.RetireAssetName} {
		reg(name, func(_ context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
			return serverapi.DecommissionStepResult{Note: name + " done"}, f.record(name, in)
		})
	}
	reg(serverapi.LeaveAggregateName, func(_ context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
		if err := f.record(serverapi.LeaveAggregateName, in); err != nil || !f.nova {
			return serverapi.DecommissionStepResult{Skipped: !f.nova, Note: serverapi.NoteNoNova}, err
		}
		return serverapi.DecommissionStepResult{}, nil
	})
	reg(serverapi.DeleteCloudNodeName, func(_ context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
		if err := f.record(serverapi.DeleteCloudNodeName, in); err != nil || !f.ironic {
			return serverapi.DecommissionStepResult{Skipped: !f.ironic, Note: serverapi.NoteNoIronic}, err
		}
		return serverapi.DecommissionStepResult{}, nil
	})
	reg(serverapi.ReleaseRackUnitName, func(_ context.Context, in serverapi.ReleaseRackUnitInput) error {
		return f.record(serverapi.ReleaseRackUnitName, in)
	})
	reg(serverapi.LeaveLoadBalancerName, func(_ context.Context, in serverapi.LoadBalancerMembershipInput) error {
		return f.record(serverapi.LeaveLoadBalancerName, in)
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
		BMC: &serverapi.BMCRef{Address: "https://127.0.0.1:9443", CredentialRef: "cred-1"}}
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
		serverapi.LeaveAggregateName, serverapi.DeleteCloudNodeName, serverapi.WipeServerName, serverapi.ResetBIOSDefaultsName,
		serverapi.PowerOffServerName, serverapi.RetireAssetName, serverapi.ReleaseRackUnitName,
	}, lt.fake.calls)
	leave := lt.fake.inputs[serverapi.LeaveAggregateName][0].(serverapi.DecommissionStepInput)
	require.Equal(t, "hv-1", leave.Host)
	require.Equal(t, "R07", leave.Rack)
	release := lt.fake.inputs[serverapi.ReleaseRackUnitName][0].(serverapi.ReleaseRackUnitInput)
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
	require.Equal(t, serverapi.NoteNoNova, stepByName(final, StepLeaveAggregate).Note)
	require.Equal(t, StepSkipped, stepByName(final, StepDeleteCloudNode).Status)
	require.Equal(t, serverapi.NoteNoIronic, stepByName(final, StepDeleteCloudNode).Note)
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
	require.Zero(t, lt.fake.count(serverapi.LeaveAggregateName))
}

func TestDecommissionAttentionAndRetry(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.fake.failNext(serverapi.WipeServerName, appErr("BMC refused the credential", stepapi.ErrTypeBMCAuth))
	var parked DecommissionStatus
	var badAbort, unrack, retry *updateOutcome
	lt.at(time.Minute, func() {
		parked = lt.decommissionStatus()
		badAbort = lt.update(UpdateAbort, AbortInput{})
		unrack = lt.update(UpdateUnracked, UnrackedInput{})
		retry = lt.update(UpdateRetry, RetryInput{BMC: &serverapi.BMCRef{CredentialRef: "cred-2"}, By: "ops"})
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
	require.Equal(t, 2, lt.fake.count(serverapi.WipeServerName))
	second := lt.fake.inputs[serverapi.WipeServerName][1].(serverapi.DecommissionStepInput)
	require.Equal(t, "cred-2", second.BMC.CredentialRef)
	require.Equal(t, "https://127.0.0.1:9443", second.BMC.Address)
	first := lt.fake.inputs[serverapi.WipeServerName][0].(serverapi.DecommissionStepInput)
	require.NotEqual(t, first.Key, second.Key, "a retry is a new try: its history line and BIOS reset are its own")
	require.Equal(t, StateDecommissioned, final.State)
	require.Equal(t, StepDone, stepByName(final, StepSecureWipe).Status)
}

func TestDecommissionAbortInAttention(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.fake.failNext(serverapi.PowerOffServerName, appErr("BMC rejected the request", stepapi.ErrTypeBMCRejected))
	lt.at(time.Minute, func() { lt.update(UpdateAbort, AbortInput{Reason: "server sold as is", By: "ops"}) })
	lt.env.ExecuteWorkflow(DecommissionName, decommissionInput("SN-D5", "compute"))
	require.True(t, lt.env.IsWorkflowCompleted())
	require.ErrorContains(t, lt.env.GetWorkflowError(), "server sold as is")
	require.Zero(t, lt.fake.count(serverapi.RetireAssetName))
	require.Zero(t, lt.fake.count(serverapi.ReleaseRackUnitName))
}

package server

import (
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/internal/wftest"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

func newDecommissionTest(t *testing.T) *lifecycleTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(Decommission, workflow.RegisterOptions{Name: serverapi.DecommissionName})
	f := wftest.NewActivities()
	f.RegisterDecommission(env)
	return &lifecycleTest{t: t, env: env, fake: f}
}

func decommissionInput(serial, role string) serverapi.DecommissionInput {
	loc := dock
	return serverapi.DecommissionInput{Serial: serial, Role: role, Location: &loc,
		BMC: &serverapi.BMCRef{Address: "https://127.0.0.1:9443", CredentialRef: "cred-1"}}
}

func (lt *lifecycleTest) decommissionStatus() serverapi.DecommissionStatus {
	lt.t.Helper()
	v, err := lt.env.QueryWorkflow(stepapi.QueryStatus)
	require.NoError(lt.t, err)
	var st serverapi.DecommissionStatus
	require.NoError(lt.t, v.Get(&st))
	return st
}

func stepByName(st serverapi.DecommissionStatus, name string) stepapi.StepStatus {
	for _, s := range st.Steps {
		if s.Name == name {
			return s
		}
	}
	return stepapi.StepStatus{}
}

func TestDecommissionHappyPathWithCloud(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.fake.Ironic, lt.fake.Nova = true, true
	var late *wftest.UpdateOutcome
	var waiting serverapi.DecommissionStatus
	lt.at(time.Hour, func() {
		waiting = lt.decommissionStatus()
		late = lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{By: "tech-7"})
	})
	in := decommissionInput("SN-D1", "hypervisor")
	in.Host = "hv-1"
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, in)
	require.True(t, lt.env.IsWorkflowCompleted())
	require.NoError(t, lt.env.GetWorkflowError())
	var final serverapi.DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))

	require.Equal(t, serverapi.StateWaitingUnrack, waiting.State)
	require.Equal(t, serverapi.StepUnrack, waiting.Step)
	require.NoError(t, late.Refused())
	require.Equal(t, serverapi.StateDecommissioned, final.State)
	for _, s := range final.Steps {
		require.Equal(t, stepapi.StepDone, s.Status, s.Name)
	}
	require.Equal(t, []string{
		serverapi.LeaveAggregateName, serverapi.DeleteCloudNodeName, serverapi.WipeServerName, serverapi.ResetBIOSDefaultsName,
		serverapi.PowerOffServerName, serverapi.RetireAssetName, serverapi.ReleaseRackUnitName,
	}, lt.fake.Calls)
	leave := lt.fake.Inputs[serverapi.LeaveAggregateName][0].(serverapi.DecommissionStepInput)
	require.Equal(t, "hv-1", leave.Host)
	require.Equal(t, "R07", leave.Rack)
	release := lt.fake.Inputs[serverapi.ReleaseRackUnitName][0].(serverapi.ReleaseRackUnitInput)
	require.Equal(t, "tech-7", release.Actor)
}

func TestDecommissionSkipsCloudStepsByConfig(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.at(time.Hour, func() { lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{}) })
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, decommissionInput("SN-D2", "hypervisor"))
	require.NoError(t, lt.env.GetWorkflowError())
	var final serverapi.DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))
	require.Equal(t, stepapi.StepSkipped, stepByName(final, serverapi.StepLeaveAggregate).Status)
	require.Equal(t, serverapi.NoteNoNova, stepByName(final, serverapi.StepLeaveAggregate).Note)
	require.Equal(t, stepapi.StepSkipped, stepByName(final, serverapi.StepDeleteCloudNode).Status)
	require.Equal(t, serverapi.NoteNoIronic, stepByName(final, serverapi.StepDeleteCloudNode).Note)
	require.Equal(t, stepapi.StepDone, stepByName(final, serverapi.StepSecureWipe).Status)
	require.Equal(t, serverapi.StateDecommissioned, final.State)

	// A compute node was never in an aggregate: no Nova call at all.
	lt = newDecommissionTest(t)
	lt.fake.Nova = true
	lt.at(time.Hour, func() { lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{}) })
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, decommissionInput("SN-D3", "compute"))
	require.NoError(t, lt.env.GetWorkflowError())
	require.NoError(t, lt.env.GetWorkflowResult(&final))
	require.Equal(t, stepapi.StepSkipped, stepByName(final, serverapi.StepLeaveAggregate).Status)
	require.Contains(t, stepByName(final, serverapi.StepLeaveAggregate).Note, "only hypervisors")
	require.Zero(t, lt.fake.Count(serverapi.LeaveAggregateName))
}

func TestDecommissionAttentionAndRetry(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.fake.FailNext(serverapi.WipeServerName, wftest.NonRetryable("BMC refused the credential", stepapi.ErrTypeBMCAuth))
	var parked serverapi.DecommissionStatus
	var badAbort, unrack, retry *wftest.UpdateOutcome
	lt.at(time.Minute, func() {
		parked = lt.decommissionStatus()
		badAbort = lt.update(stepapi.UpdateAbort, stepapi.AbortInput{})
		unrack = lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{})
		retry = lt.update(stepapi.UpdateRetry, serverapi.RetryInput{BMC: &serverapi.BMCRef{CredentialRef: "cred-2"}, By: "ops"})
	})
	lt.at(time.Hour, func() { lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{}) })
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, decommissionInput("SN-D4", "compute"))
	require.NoError(t, lt.env.GetWorkflowError())
	var final serverapi.DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))

	require.Equal(t, serverapi.StateAttention, parked.State)
	require.Equal(t, serverapi.StepSecureWipe, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "refused the credential")
	require.ErrorContains(t, badAbort.Refused(), "reason")
	require.ErrorContains(t, unrack.Refused(), "not waiting to be unracked", "refused before the workflow waits for it")
	require.NoError(t, retry.Refused())
	require.Equal(t, 2, lt.fake.Count(serverapi.WipeServerName))
	second := lt.fake.Inputs[serverapi.WipeServerName][1].(serverapi.DecommissionStepInput)
	require.Equal(t, "cred-2", second.BMC.CredentialRef)
	require.Equal(t, "https://127.0.0.1:9443", second.BMC.Address)
	first := lt.fake.Inputs[serverapi.WipeServerName][0].(serverapi.DecommissionStepInput)
	require.NotEqual(t, first.Key, second.Key, "a retry is a new try: its history line and BIOS reset are its own")
	require.Equal(t, serverapi.StateDecommissioned, final.State)
	require.Equal(t, stepapi.StepDone, stepByName(final, serverapi.StepSecureWipe).Status)
}

func TestDecommissionAbortInAttention(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.fake.FailNext(serverapi.PowerOffServerName, wftest.NonRetryable("BMC rejected the request", stepapi.ErrTypeBMCRejected))
	lt.at(time.Minute, func() { lt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "server sold as is", By: "ops"}) })
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, decommissionInput("SN-D5", "compute"))
	require.True(t, lt.env.IsWorkflowCompleted())
	require.ErrorContains(t, lt.env.GetWorkflowError(), "server sold as is")
	require.Zero(t, lt.fake.Count(serverapi.RetireAssetName))
	require.Zero(t, lt.fake.Count(serverapi.ReleaseRackUnitName))
}

// upsertedAttributes records, in order, the states and steps a workflow
// upserts into its search attributes.
type upsertedAttributes struct {
	states, steps []string
}

func (lt *lifecycleTest) recordAttributes() *upsertedAttributes {
	u := &upsertedAttributes{}
	lt.env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		if v, ok := sa.GetKeyword(serverattrs.LifecycleState()); ok {
			u.states = append(u.states, v)
		}
		if v, ok := sa.GetKeyword(serverattrs.LifecycleStep()); ok {
			u.steps = append(u.steps, v)
			_, stamped := sa.GetTime(serverattrs.LifecycleStepStartedAt())
			require.True(lt.t, stamped, "step %s without its start", v)
		}
	}).Return(nil)
	return u
}

// The fleet list reads a decommissioned server's state from its
// decommission's search attributes: they follow its status through
// attention, the wait for the technician and the end.
func TestDecommissionKeepsTheServerStateInSearchAttributes(t *testing.T) {
	lt := newDecommissionTest(t)
	attrs := lt.recordAttributes()
	lt.fake.FailNext(serverapi.WipeServerName, wftest.NonRetryable("BMC refused the credential", stepapi.ErrTypeBMCAuth))
	var parked, waiting []string
	lt.at(time.Minute, func() {
		require.Equal(t, serverapi.StateAttention, lt.decommissionStatus().State)
		parked = append([]string(nil), attrs.states...)
		lt.update(stepapi.UpdateRetry, serverapi.RetryInput{BMC: &serverapi.BMCRef{CredentialRef: "cred-2"}})
	})
	lt.at(time.Hour, func() {
		require.Equal(t, serverapi.StateWaitingUnrack, lt.decommissionStatus().State)
		waiting = append([]string(nil), attrs.states...)
		lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{})
	})
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, decommissionInput("SN-D6", "compute"))
	require.NoError(t, lt.env.GetWorkflowError())

	require.Equal(t, []string{serverapi.StateAttention}, parked)
	require.Equal(t, []string{serverapi.StateAttention, serverapi.StateDecommissioning, serverapi.StateWaitingUnrack}, waiting)
	require.Equal(t, []string{serverapi.StateAttention, serverapi.StateDecommissioning, serverapi.StateWaitingUnrack,
		serverapi.StateDecommissioned}, attrs.states)
	// The wipe started twice: before its attention and on the retry.
	require.Equal(t, []string{serverapi.StepLeaveAggregate, serverapi.StepDeleteCloudNode, serverapi.StepSecureWipe, serverapi.StepSecureWipe,
		serverapi.StepResetBIOS, serverapi.StepPowerOff, serverapi.StepRetireAsset, serverapi.StepUnrack, serverapi.StateDecommissioned}, attrs.steps)
}

// An aborted decommission gives the server back: its attributes say so,
// and the list shows the lifecycle's state again (serverapi.ServerState).
func TestAbortedDecommissionSaysSoInSearchAttributes(t *testing.T) {
	lt := newDecommissionTest(t)
	attrs := lt.recordAttributes()
	lt.fake.FailNext(serverapi.PowerOffServerName, wftest.NonRetryable("BMC rejected the request", stepapi.ErrTypeBMCRejected))
	lt.at(time.Minute, func() { lt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "sold as is", By: "ops"}) })
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, decommissionInput("SN-D7", "compute"))
	require.Error(t, lt.env.GetWorkflowError())
	require.Equal(t, []string{serverapi.StateAttention, serverapi.StateDecommissioning, serverapi.StateAborted}, attrs.states)
}

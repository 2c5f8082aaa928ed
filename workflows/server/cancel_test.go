package server

import (
	"context"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/internal/wftest"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// A lifecycle cancelled in attention (a decommission of a server still
// being provisioned) withdraws its pending netboot through CancelServer,
// keeps its rack unit (the server is still in it) and ends cancelled.
func TestLifecycleCancelledInAttentionCompensates(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.ConfigureRAIDName, wftest.NonRetryable("RAID1 needs 2 free drives, controller has 1", stepapi.ErrTypeRAIDImpossible))
	in := input("SN-C1")
	in.Location = &dock
	var parked serverapi.ServerStatus
	lt.at(time.Minute, func() {
		parked = lt.status()
		lt.env.CancelWorkflow()
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	require.True(t, lt.env.IsWorkflowCompleted())
	require.True(t, temporal.IsCanceledError(lt.env.GetWorkflowError()), "%v", lt.env.GetWorkflowError())
	require.Equal(t, serverapi.StateAttention, parked.State)

	st := lt.status()
	require.Equal(t, serverapi.StateCancelled, st.State)
	require.Empty(t, st.Step)
	require.Nil(t, st.Attention)
	raid := stepOf(st, serverapi.StepConfigureRAID)
	require.Equal(t, stepapi.StepFailed, raid.Status)
	require.Contains(t, raid.Error, "RAID1 needs", "the attention's cause stays on record")
	require.Equal(t, []serverapi.CancelServerInput{{Serial: "SN-C1", Step: serverapi.StepConfigureRAID}},
		inputsOf[serverapi.CancelServerInput](lt.fake, serverapi.CancelServerName))
	require.Zero(t, lt.fake.Count(serverapi.AbortServerName), "cancel is not abort: the rack unit stays claimed")
	require.Zero(t, lt.fake.Count(serverapi.ReleaseRackUnitName))
	require.Zero(t, lt.fake.Count(serverapi.StartInstallName))
}

// Cancelled while it waits for a technician, the Rack step says so.
func TestLifecycleCancelledWhileWaitingForRack(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.at(time.Minute, func() { lt.env.CancelWorkflow() })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, input("SN-C2"))
	require.True(t, temporal.IsCanceledError(lt.env.GetWorkflowError()))
	st := lt.status()
	require.Equal(t, serverapi.StateCancelled, st.State)
	rack := stepOf(st, serverapi.StepRack)
	require.Equal(t, stepapi.StepFailed, rack.Status)
	require.Contains(t, rack.Error, "cancelled")
	require.NotNil(t, rack.FinishedAt)
	require.Equal(t, []string{serverapi.CancelServerName}, lt.fake.Calls)
}

func stepOf(st serverapi.ServerStatus, name string) stepapi.StepStatus {
	for _, s := range st.Steps {
		if s.Name == name {
			return s
		}
	}
	return stepapi.StepStatus{}
}

func inputsOf[T any](f *wftest.Activities, name string) []T {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	var out []T
	for _, in := range f.Inputs[name] {
		out = append(out, in.(T))
	}
	return out
}

// newCancellingDecommissionTest stands in for a running lifecycle that,
// told where to report and cancelled, answers with end a minute later.
func newCancellingDecommissionTest(t *testing.T, end serverapi.LifecycleEnd) *lifecycleTest {
	lt := newDecommissionTest(t)
	lt.env.RegisterActivityWithOptions(func(_ context.Context, in serverapi.AwaitLifecycleEndInput) (serverapi.LifecycleEnd, error) {
		return end, lt.fake.Record(serverapi.AwaitLifecycleEndName, in)
	}, activity.RegisterOptions{Name: serverapi.AwaitLifecycleEndName})
	lt.env.OnSignalExternalWorkflow(mock.Anything, serverapi.LifecycleWorkflowID("SN-DC"), "", serverapi.SignalDecommissioning,
		serverapi.Decommissioning{WorkflowID: decommissionTestID}).Return(nil).Once()
	lt.env.OnRequestCancelExternalWorkflow(mock.Anything, serverapi.LifecycleWorkflowID("SN-DC"), "").Return(nil).Once()
	lt.at(time.Minute, func() { lt.env.SignalWorkflow(serverapi.SignalLifecycleEnded, end) })
	return lt
}

// The test environment's ID for the workflow under test.
const decommissionTestID = "default-test-workflow-id"

// A server cancelled before anything wrote to it is not wiped or reset
// (there is nothing to erase), is powered off, and, never racked, does not
// wait for a technician.
func TestDecommissionCancelsAnUntouchedLifecycle(t *testing.T) {
	lt := newCancellingDecommissionTest(t, serverapi.LifecycleEnd{State: serverapi.StateCancelled})
	in := decommissionInput("SN-DC", "compute")
	in.Location, in.CancelLifecycle = nil, true
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, in)
	require.True(t, lt.env.IsWorkflowCompleted())
	require.NoError(t, lt.env.GetWorkflowError())
	lt.env.AssertExpectations(t)
	var final serverapi.DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))
	require.Equal(t, serverapi.StateDecommissioned, final.State)
	require.Equal(t, serverapi.StepCancelProvisioning, final.Steps[0].Name, "cancelling comes first")
	require.Equal(t, stepapi.StepDone, final.Steps[0].Status)
	for _, name := range []string{serverapi.StepSecureWipe, serverapi.StepResetBIOS, serverapi.StepUnrack} {
		require.Equal(t, stepapi.StepSkipped, stepByName(final, name).Status, name)
	}
	require.Contains(t, stepByName(final, serverapi.StepSecureWipe).Note, "before BIOS, RAID or the install")
	require.Equal(t, stepapi.StepDone, stepByName(final, serverapi.StepPowerOff).Status)
	require.Equal(t, []string{serverapi.DeleteCloudNodeName,
		serverapi.PowerOffServerName, serverapi.RetireAssetName}, lt.fake.Calls, "the lifecycle said how it ended: nothing polled it")
}

// A server cancelled mid-install is wiped and reset like any other, and
// the rack unit is freed only once a technician reports it unracked.
func TestDecommissionCancelsATouchedLifecycle(t *testing.T) {
	lt := newCancellingDecommissionTest(t, serverapi.LifecycleEnd{State: serverapi.StateCancelled, Touched: true, Racked: true})
	var waiting serverapi.DecommissionStatus
	lt.at(time.Hour, func() {
		waiting = lt.decommissionStatus()
		lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{By: "tech-1"})
	})
	in := decommissionInput("SN-DC", "compute")
	in.CancelLifecycle = true
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, in)
	require.NoError(t, lt.env.GetWorkflowError())
	lt.env.AssertExpectations(t)
	require.Equal(t, serverapi.StateWaitingUnrack, waiting.State)
	require.Equal(t, []string{serverapi.DeleteCloudNodeName,
		serverapi.WipeServerName, serverapi.ResetBIOSDefaultsName, serverapi.PowerOffServerName,
		serverapi.RetireAssetName, serverapi.ReleaseRackUnitName}, lt.fake.Calls)
}

// Without a BMC ever given, nothing can be powered off: skipped, not an
// attention asking for a BMC nobody has.
func TestDecommissionOfACancelledServerWithoutBMC(t *testing.T) {
	lt := newCancellingDecommissionTest(t, serverapi.LifecycleEnd{State: serverapi.StateCancelled, Racked: true})
	lt.at(time.Hour, func() { lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{}) })
	in := decommissionInput("SN-DC", "compute")
	in.BMC, in.CancelLifecycle = nil, true
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, in)
	require.NoError(t, lt.env.GetWorkflowError())
	var final serverapi.DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))
	require.Equal(t, stepapi.StepSkipped, stepByName(final, serverapi.StepPowerOff).Status)
	require.Contains(t, stepByName(final, serverapi.StepPowerOff).Note, "no BMC")
	require.Equal(t, stepapi.StepDone, stepByName(final, serverapi.StepUnrack).Status)
}

// A lifecycle that ended between the API's look and the cancellation
// cannot be told or cancelled: the decommission reads how it ended.
func TestDecommissionOfALifecycleThatHadEnded(t *testing.T) {
	lt := newDecommissionTest(t)
	end := serverapi.LifecycleEnd{State: serverapi.StateInstalled, Touched: true}
	lt.env.RegisterActivityWithOptions(func(_ context.Context, in serverapi.AwaitLifecycleEndInput) (serverapi.LifecycleEnd, error) {
		return end, lt.fake.Record(serverapi.AwaitLifecycleEndName, in)
	}, activity.RegisterOptions{Name: serverapi.AwaitLifecycleEndName})
	gone := serviceerror.NewNotFound("workflow not found")
	lt.env.OnSignalExternalWorkflow(mock.Anything, serverapi.LifecycleWorkflowID("SN-DC"), "", serverapi.SignalDecommissioning, mock.Anything).Return(gone).Once()
	lt.env.OnRequestCancelExternalWorkflow(mock.Anything, serverapi.LifecycleWorkflowID("SN-DC"), "").Return(gone).Once()
	lt.at(time.Hour, func() { lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{}) })
	in := decommissionInput("SN-DC", "compute")
	in.CancelLifecycle = true
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, in)
	require.NoError(t, lt.env.GetWorkflowError())
	lt.env.AssertExpectations(t)
	require.Equal(t, serverapi.AwaitLifecycleEndName, lt.fake.Calls[0])
	require.Contains(t, lt.fake.Calls, serverapi.WipeServerName, "installed: it was written to, so it is wiped")
}

// A lifecycle told and cancelled that never answers (its worker gone) is
// looked at directly once lifecycleEndWait has passed.
func TestDecommissionLooksAtASilentLifecycle(t *testing.T) {
	lt := newDecommissionTest(t)
	end := serverapi.LifecycleEnd{State: serverapi.StateCancelled, Racked: true}
	var looked time.Duration
	start := lt.env.Now()
	lt.env.RegisterActivityWithOptions(func(_ context.Context, in serverapi.AwaitLifecycleEndInput) (serverapi.LifecycleEnd, error) {
		looked = lt.env.Now().Sub(start)
		return end, lt.fake.Record(serverapi.AwaitLifecycleEndName, in)
	}, activity.RegisterOptions{Name: serverapi.AwaitLifecycleEndName})
	lt.env.OnSignalExternalWorkflow(mock.Anything, serverapi.LifecycleWorkflowID("SN-DC"), "", serverapi.SignalDecommissioning, mock.Anything).Return(nil).Once()
	lt.env.OnRequestCancelExternalWorkflow(mock.Anything, serverapi.LifecycleWorkflowID("SN-DC"), "").Return(nil).Once()
	lt.at(2*lifecycleEndWait, func() { lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{}) })
	in := decommissionInput("SN-DC", "compute")
	in.CancelLifecycle = true
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, in)
	require.NoError(t, lt.env.GetWorkflowError())
	require.Equal(t, serverapi.AwaitLifecycleEndName, lt.fake.Calls[0])
	require.GreaterOrEqual(t, looked, lifecycleEndWait)
}

// A lifecycle a decommission cancels reports how far it had got to the
// decommission that told it where, once its compensation has run.
func TestCancelledLifecycleReportsItsEndToTheDecommission(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.ConfigureRAIDName, wftest.NonRetryable("no drives", stepapi.ErrTypeRAIDImpossible))
	in := input("SN-C3")
	in.Location = &dock
	var reported []serverapi.LifecycleEnd
	lt.env.OnSignalExternalWorkflow(mock.Anything, serverapi.DecommissionWorkflowID("SN-C3"), "", serverapi.SignalLifecycleEnded, mock.Anything).
		Run(func(args mock.Arguments) { reported = append(reported, args.Get(4).(serverapi.LifecycleEnd)) }).Return(nil).Once()
	lt.at(time.Minute, func() {
		lt.env.SignalWorkflow(serverapi.SignalDecommissioning, serverapi.Decommissioning{WorkflowID: serverapi.DecommissionWorkflowID("SN-C3")})
		lt.env.CancelWorkflow()
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	require.True(t, temporal.IsCanceledError(lt.env.GetWorkflowError()))
	lt.env.AssertExpectations(t)
	require.Equal(t, []serverapi.LifecycleEnd{{State: serverapi.StateCancelled, Touched: true, Racked: true}}, reported,
		"BIOS and RAID had started: the decommission must wipe")
	require.Equal(t, 1, lt.fake.Count(serverapi.CancelServerName), "reported after its compensation")
}

func TestLifecycleEndOf(t *testing.T) {
	now := time.Now()
	st := serverapi.ServerStatus{State: serverapi.StateCancelled, Steps: []stepapi.StepStatus{{Name: serverapi.StepInspect, StartedAt: &now}, {Name: serverapi.StepConfigureBIOS}}}
	require.Equal(t, serverapi.LifecycleEnd{State: serverapi.StateCancelled}, serverapi.LifecycleEndOf(st))
	st.Steps[1].StartedAt = &now
	st.Location = &dock
	require.Equal(t, serverapi.LifecycleEnd{State: serverapi.StateCancelled, Touched: true, Racked: true}, serverapi.LifecycleEndOf(st))
}

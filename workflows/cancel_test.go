package workflows

import (
	"context"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// A lifecycle cancelled in attention (a decommission of a server still
// being provisioned) withdraws its pending netboot through CancelServer,
// keeps its rack unit (the server is still in it) and ends cancelled.
func TestLifecycleCancelledInAttentionCompensates(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.failNext(serverapi.ConfigureRAIDName, appErr("RAID1 needs 2 free drives, controller has 1", stepapi.ErrTypeRAIDImpossible))
	in := input("SN-C1")
	in.Location = &dock
	var parked ServerStatus
	lt.at(time.Minute, func() {
		parked = lt.status()
		lt.env.CancelWorkflow()
	})
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	require.True(t, lt.env.IsWorkflowCompleted())
	require.True(t, temporal.IsCanceledError(lt.env.GetWorkflowError()), "%v", lt.env.GetWorkflowError())
	require.Equal(t, StateAttention, parked.State)

	st := lt.status()
	require.Equal(t, StateCancelled, st.State)
	require.Empty(t, st.Step)
	require.Nil(t, st.Attention)
	raid := stepOf(st, StepConfigureRAID)
	require.Equal(t, StepFailed, raid.Status)
	require.Contains(t, raid.Error, "RAID1 needs", "the attention's cause stays on record")
	require.Equal(t, []serverapi.CancelServerInput{{Serial: "SN-C1", Step: StepConfigureRAID}},
		inputsOf[serverapi.CancelServerInput](lt.fake, serverapi.CancelServerName))
	require.Zero(t, lt.fake.count(serverapi.AbortServerName), "cancel is not abort: the rack unit stays claimed")
	require.Zero(t, lt.fake.count(serverapi.ReleaseRackUnitName))
	require.Zero(t, lt.fake.count(serverapi.StartInstallName))
}

// Cancelled while it waits for a technician, the Rack step says so.
func TestLifecycleCancelledWhileWaitingForRack(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.at(time.Minute, func() { lt.env.CancelWorkflow() })
	lt.env.ExecuteWorkflow(ServerLifecycleName, input("SN-C2"))
	require.True(t, temporal.IsCanceledError(lt.env.GetWorkflowError()))
	st := lt.status()
	require.Equal(t, StateCancelled, st.State)
	rack := stepOf(st, StepRack)
	require.Equal(t, StepFailed, rack.Status)
	require.Contains(t, rack.Error, "cancelled")
	require.NotNil(t, rack.FinishedAt)
	require.Equal(t, []string{serverapi.CancelServerName}, lt.fake.calls)
}

func stepOf(st ServerStatus, name string) StepStatus {
	for _, s := range st.Steps {
		if s.Name == name {
			return s
		}
	}
	return StepStatus{}
}

func inputsOf[T any](f *fakeProvisioning, name string) []T {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []T
	for _, in := range f.inputs[name] {
		out = append(out, in.(T))
	}
	return out
}

func newCancellingDecommissionTest(t *testing.T, end LifecycleEnd) *lifecycleTest {
	lt := newDecommissionTest(t)
	lt.env.RegisterActivityWithOptions(func(_ context.Context, in AwaitLifecycleEndInput) (LifecycleEnd, error) {
		return end, lt.fake.record(AwaitLifecycleEndName, in)
	}, activity.RegisterOptions{Name: AwaitLifecycleEndName})
	lt.env.OnRequestCancelExternalWorkflow(mock.Anything, LifecycleWorkflowID("SN-DC"), "").Return(nil).Once()
	return lt
}

// A server cancelled before anything wrote to it is not wiped or reset
// (there is nothing to erase), is powered off, and, never racked, does not
// wait for a technician.
func TestDecommissionCancelsAnUntouchedLifecycle(t *testing.T) {
	lt := newCancellingDecommissionTest(t, LifecycleEnd{State: StateCancelled})
	in := decommissionInput("SN-DC", "compute")
	in.Location, in.CancelLifecycle = nil, true
	lt.env.ExecuteWorkflow(DecommissionName, in)
	require.True(t, lt.env.IsWorkflowCompleted())
	require.NoError(t, lt.env.GetWorkflowError())
	lt.env.AssertExpectations(t)
	var final DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))
	require.Equal(t, StateDecommissioned, final.State)
	require.Equal(t, StepCancelProvisioning, final.Steps[0].Name, "cancelling comes first")
	require.Equal(t, StepDone, final.Steps[0].Status)
	for _, name := range []string{StepSecureWipe, StepResetBIOS, StepUnrack} {
		require.Equal(t, StepSkipped, stepByName(final, name).Status, name)
	}
	require.Contains(t, stepByName(final, StepSecureWipe).Note, "before BIOS, RAID or the install")
	require.Equal(t, StepDone, stepByName(final, StepPowerOff).Status)
	require.Equal(t, []string{AwaitLifecycleEndName, serverapi.DeleteCloudNodeName,
		serverapi.PowerOffServerName, serverapi.RetireAssetName}, lt.fake.calls)
}

// A server cancelled mid-install is wiped and reset like any other, and
// the rack unit is freed only once a technician reports it unracked.
func TestDecommissionCancelsATouchedLifecycle(t *testing.T) {
	lt := newCancellingDecommissionTest(t, LifecycleEnd{State: StateCancelled, Touched: true, Racked: true})
	var waiting DecommissionStatus
	lt.at(time.Hour, func() {
		waiting = lt.decommissionStatus()
		lt.update(UpdateUnracked, UnrackedInput{By: "tech-1"})
	})
	in := decommissionInput("SN-DC", "compute")
	in.CancelLifecycle = true
	lt.env.ExecuteWorkflow(DecommissionName, in)
	require.NoError(t, lt.env.GetWorkflowError())
	lt.env.AssertExpectations(t)
	require.Equal(t, StateWaitingUnrack, waiting.State)
	require.Equal(t, []string{AwaitLifecycleEndName, serverapi.DeleteCloudNodeName,
		serverapi.WipeServerName, serverapi.ResetBIOSDefaultsName, serverapi.PowerOffServerName,
		serverapi.RetireAssetName, serverapi.ReleaseRackUnitName}, lt.fake.calls)
}

// Without a BMC ever given, nothing can be powered off: skipped, not an
// attention asking for a BMC nobody has.
func TestDecommissionOfACancelledServerWithoutBMC(t *testing.T) {
	lt := newCancellingDecommissionTest(t, LifecycleEnd{State: StateCancelled, Racked: true})
	lt.at(time.Hour, func() { lt.update(UpdateUnracked, UnrackedInput{}) })
	in := decommissionInput("SN-DC", "compute")
	in.BMC, in.CancelLifecycle = nil, true
	lt.env.ExecuteWorkflow(DecommissionName, in)
	require.NoError(t, lt.env.GetWorkflowError())
	var final DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))
	require.Equal(t, StepSkipped, stepByName(final, StepPowerOff).Status)
	require.Contains(t, stepByName(final, StepPowerOff).Note, "no BMC")
	require.Equal(t, StepDone, stepByName(final, StepUnrack).Status)
}

func TestLifecycleEndOf(t *testing.T) {
	now := time.Now()
	st := ServerStatus{State: StateCancelled, Steps: []StepStatus{{Name: StepInspect, StartedAt: &now}, {Name: StepConfigureBIOS}}}
	require.Equal(t, LifecycleEnd{State: StateCancelled}, LifecycleEndOf(st))
	st.Steps[1].StartedAt = &now
	st.Location = &dock
	require.Equal(t, LifecycleEnd{State: StateCancelled, Touched: true, Racked: true}, LifecycleEndOf(st))
}

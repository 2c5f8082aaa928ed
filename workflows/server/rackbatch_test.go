package server

import (
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/internal/wftest"
	"github.com/metalflow/metalflow/workflows/rackbatch"
	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
)

// The real ServerLifecycle as a real batch's child, on the stand-in
// activities: racked at its unit from the start, one of them parked by a
// wrong credential, which it reports to the batch (nothing polls), and
// settled once the grace has passed.
func TestRackBatchRunsRealLifecycles(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	Register(env)
	rackbatch.Register(env)
	fake := wftest.NewActivities()
	fake.Register(env)
	// SN-B's BMC refuses its credential. With one lifecycle at a time SN-B
	// is inspected first, so the refusal is certainly its.
	fake.FailNext(serverapi.InspectServerName, wftest.NonRetryable("BMC refused the credential: 401", stepapi.ErrTypeBMCAuth))
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: batchapi.RackBatchWorkflowID("dc1", "R07", "b1")})
	// Each installer phones home five minutes after its netboot.
	env.SetOnActivityCompletedListener(func(info *activity.Info, _ converter.EncodedValue, err error) {
		if info.ActivityType.Name != serverapi.StartInstallName || err != nil {
			return
		}
		id := info.WorkflowExecution.ID
		env.RegisterDelayedCallback(func() {
			require.NoError(t, env.SignalWorkflowByID(id, serverapi.SignalPhoneHome, serverapi.PhoneHome{Attempt: 1}))
		}, 5*time.Minute)
	})
	// Staff abort SN-B long after the batch reported it (the test
	// environment waits for abandoned children to end).
	var abort *wftest.UpdateOutcome
	env.RegisterDelayedCallback(func() {
		abort = &wftest.UpdateOutcome{}
		require.NoError(t, env.UpdateWorkflowByID(serverapi.LifecycleWorkflowID("SN-B"), stepapi.UpdateAbort, "abort-1", abort.Callbacks(), stepapi.AbortInput{Reason: "wrong chassis"}))
	}, 6*time.Hour)
	in := batchapi.RackBatchInput{BatchID: "b1", Site: "dc1", Rack: "R07"}
	for i, serial := range []string{"SN-B", "SN-A", "SN-C"} {
		in.Servers = append(in.Servers, batchapi.RackBatchServer{
			Serial: serial, BMC: &serverapi.BMCRef{Address: "https://10.1.7.1", CredentialRef: "cred-" + serial},
			Location: serverapi.Location{Site: "dc1", Rack: "R07", Unit: i + 1, Face: serverapi.FaceFront},
		})
	}
	in.Concurrency = 1
	in.AttentionGrace = 20 * time.Minute
	env.ExecuteWorkflow(batchapi.RackBatchName, in)
	require.NoError(t, env.GetWorkflowError())
	var res batchapi.RackBatchStatus
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, 3, res.Total)
	require.Equal(t, 2, res.Installed, "%+v", res.PerServer)
	require.Equal(t, 1, res.Attention)
	require.Equal(t, batchapi.BatchServerState{Serial: "SN-B", State: serverapi.StateAttention, Step: serverapi.StepInspect, Error: "BMC refused the credential: 401", Settled: true}, res.PerServer[0])
	// Racked by the batch: every lifecycle claimed its unit without waiting
	// for a technician, and the credential went by reference.
	racks := fake.Inputs[serverapi.RackServerName]
	require.Len(t, racks, 3)
	for _, r := range racks {
		rs := r.(serverapi.RackServerInput)
		require.Equal(t, "rack-batch", rs.Actor)
		require.Equal(t, "R07", rs.Rack)
	}
	require.Equal(t, 2, fake.Count(serverapi.FinishInstallName))
	require.NoError(t, abort.Refused(), "the reported lifecycle outlived its batch and still took staff's decision")
	require.Equal(t, 1, fake.Count(serverapi.AbortServerName))
}

package rackbatch

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// fakeRack stands in for the servers of a batch: a child workflow registered
// under the lifecycle's name whose behaviour its serial's prefix picks, and
// the ServerStates activity answering from what those children report. The
// real lifecycle is tested in lifecycle_test.go and, as a child of a real
// batch, in the integration tests.
//
//	OK-…     takes a power slot for ten minutes, then is installed
//	ATT-…    parks in attention for a day, then is aborted
//	LATE-…   parks in attention for attentionFor, then is installed
//	FAIL-…   fails
//	ABORT-…  ends aborted
//	DROP-…   takes a power slot and fails without giving it back
type fakeRack struct {
	mu           sync.Mutex
	busy, maxBus int
	powered      int
	maxPowered   int
	states       map[string]string
	attentionFor time.Duration
	inputs       []serverapi.ServerLifecycleInput
}

func newFakeRack() *fakeRack {
	return &fakeRack{states: map[string]string{}, attentionFor: 20 * time.Minute}
}

func (f *fakeRack) set(serial, state string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[serial] = state
}

func (f *fakeRack) lifecycle(ctx workflow.Context, in serverapi.ServerLifecycleInput) (serverapi.ServerStatus, error) {
	f.mu.Lock()
	f.inputs = append(f.inputs, in)
	f.busy++
	f.maxBus = max(f.maxBus, f.busy)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.busy--
		f.mu.Unlock()
	}()
	set := func(state string) {
		f.set(in.Serial, state)
		r := batchapi.ServerStateReport{Serial: in.Serial, State: state}
		if state == serverapi.StateAttention {
			r.Step, r.Error = serverapi.StepInspect, "BMC refused the credential: 401"
		}
		ReportState(ctx, in.Batch, r)
	}
	set(serverapi.StateProvisioning)
	done := func(state string) (serverapi.ServerStatus, error) {
		set(state)
		return serverapi.ServerStatus{Serial: in.Serial, State: state}, nil
	}
	powerOp := func() error {
		return WithPowerSlot(ctx, in.Batch, in.Serial, func() error {
			f.mu.Lock()
			f.powered++
			f.maxPowered = max(f.maxPowered, f.powered)
			f.mu.Unlock()
			defer func() {
				f.mu.Lock()
				f.powered--
				f.mu.Unlock()
			}()
			return workflow.Sleep(ctx, 10*time.Minute)
		})
	}
	switch {
	case strings.HasPrefix(in.Serial, "OK-"):
		if err := powerOp(); err != nil {
			return serverapi.ServerStatus{}, err
		}
		return done(serverapi.StateInstalled)
	case strings.HasPrefix(in.Serial, "ATT-"):
		set(serverapi.StateAttention)
		// Staff abort it a day later, long after the batch reported it.
		// (It must end some time: the test environment waits for
		// abandoned children too.)
		if err := workflow.Sleep(ctx, 24*time.Hour); err != nil {
			return serverapi.ServerStatus{}, err
		}
		return done(serverapi.StateAborted)
	case strings.HasPrefix(in.Serial, "LATE-"):
		set(serverapi.StateAttention)
		if err := workflow.Sleep(ctx, f.attentionFor); err != nil {
			return serverapi.ServerStatus{}, err
		}
		set(serverapi.StateProvisioning)
		return done(serverapi.StateInstalled)
	case strings.HasPrefix(in.Serial, "FAIL-"):
		return serverapi.ServerStatus{}, temporal.NewNonRetryableApplicationError("rack unit occupied", stepapi.ErrTypeUnitOccupied, nil)
	case strings.HasPrefix(in.Serial, "ABORT-"):
		return done(serverapi.StateAborted)
	case strings.HasPrefix(in.Serial, "DROP-"):
		if _, err := AcquirePowerSlot(ctx, in.Batch, in.Serial); err != nil {
			return serverapi.ServerStatus{}, err
		}
		return serverapi.ServerStatus{}, temporal.NewNonRetryableApplicationError("worker lost the plot", "Boom", nil)
	}
	return serverapi.ServerStatus{}, fmt.Errorf("fake rack has no behaviour for %s", in.Serial)
}

type batchTest struct {
	t    *testing.T
	env  *testsuite.TestWorkflowEnvironment
	rack *fakeRack
}

func newBatchTest(t *testing.T, workflowID string) *batchTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(RackBatch, workflow.RegisterOptions{Name: batchapi.RackBatchName})
	rack := newFakeRack()
	env.RegisterWorkflowWithOptions(rack.lifecycle, workflow.RegisterOptions{Name: serverapi.ServerLifecycleName})
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: workflowID})
	return &batchTest{t: t, env: env, rack: rack}
}

func (bt *batchTest) status() batchapi.RackBatchStatus {
	bt.t.Helper()
	v, err := bt.env.QueryWorkflow(stepapi.QueryStatus)
	require.NoError(bt.t, err)
	var st batchapi.RackBatchStatus
	require.NoError(bt.t, v.Get(&st))
	return st
}

func (bt *batchTest) result() batchapi.RackBatchStatus {
	bt.t.Helper()
	require.True(bt.t, bt.env.IsWorkflowCompleted())
	require.NoError(bt.t, bt.env.GetWorkflowError())
	var st batchapi.RackBatchStatus
	require.NoError(bt.t, bt.env.GetWorkflowResult(&st))
	return st
}

func batchOf(serials ...string) batchapi.RackBatchInput {
	in := batchapi.RackBatchInput{BatchID: "b1", Site: "dc1", Rack: "R07"}
	for i, s := range serials {
		in.Servers = append(in.Servers, batchapi.RackBatchServer{
			Serial:   s,
			BMC:      &serverapi.BMCRef{Address: fmt.Sprintf("https://127.0.0.1:%d", 9000+i), CredentialRef: fmt.Sprintf("cred-%d", i)},
			Location: serverapi.Location{Site: "dc1", Rack: "R07", Unit: 2*i + 1, Face: serverapi.FaceFront},
		})
	}
	return in
}

const batchID = "rack/dc1/R07/b1"

func TestRackBatchCapsLifecyclesAndPowerOperations(t *testing.T) {
	bt := newBatchTest(t, batchID)
	in := batchOf("OK-1", "OK-2", "OK-3", "OK-4", "OK-5", "OK-6", "OK-7")
	in.Concurrency, in.PowerConcurrency = 3, 2
	var early batchapi.RackBatchStatus
	bt.env.RegisterDelayedCallback(func() { early = bt.status() }, time.Minute)
	bt.env.ExecuteWorkflow(batchapi.RackBatchName, in)
	res := bt.result()

	require.Equal(t, batchapi.BatchRunning, early.State)
	require.Equal(t, 3, early.Running, "three lifecycles at once")
	require.Equal(t, 4, early.Pending)
	require.Len(t, early.PowerSlots.Holding, 2, "two power operations at once")
	require.Len(t, early.PowerSlots.Waiting, 1)

	require.Equal(t, batchapi.BatchFinished, res.State)
	require.Equal(t, 7, res.Total)
	require.Equal(t, 7, res.Installed)
	require.Zero(t, res.Failed+res.Aborted+res.AlreadyExisting+res.Attention+res.Running+res.Pending)
	require.Equal(t, 3, bt.rack.maxBus, "never more than Concurrency lifecycles")
	require.Equal(t, 2, bt.rack.maxPowered, "never more than PowerConcurrency power operations")
	require.Equal(t, 2, res.PowerSlots.MaxHeld)
	require.Equal(t, 7, res.PowerSlots.Granted)
	require.Empty(t, res.PowerSlots.Holding)
	for i, s := range res.PerServer {
		require.Equal(t, in.Servers[i].Serial, s.Serial, "perServer keeps the batch's order")
		require.Equal(t, serverapi.StateInstalled, s.State)
		require.True(t, s.Settled)
	}
	// Each child is racked at its unit and carries its credential reference.
	require.Len(t, bt.rack.inputs, 7)
	for _, got := range bt.rack.inputs {
		var want batchapi.RackBatchServer
		for _, s := range in.Servers {
			if s.Serial == got.Serial {
				want = s
			}
		}
		require.Equal(t, &want.Location, got.Location)
		require.Equal(t, want.BMC, got.BMC)
		require.Equal(t, "rack-batch", got.Actor)
	}
}

func TestRackBatchDefaults(t *testing.T) {
	b := newRackBatch(batchOf("OK-1"))
	require.Equal(t, batchapi.DefaultBatchConcurrency, b.in.Concurrency)
	require.Equal(t, batchapi.DefaultPowerConcurrency, b.in.PowerConcurrency)
	require.Equal(t, batchapi.DefaultAttentionGrace, b.in.AttentionGrace)
	require.Equal(t, batchapi.DefaultBatchPollInterval, b.in.PollInterval)
}

func TestRackBatchSurvivesFailuresAndReportsAttention(t *testing.T) {
	bt := newBatchTest(t, batchID)
	in := batchOf("OK-1", "ATT-1", "FAIL-1", "ABORT-1", "OK-2")
	in.AttentionGrace = 30 * time.Minute
	var mid batchapi.RackBatchStatus
	bt.env.RegisterDelayedCallback(func() { mid = bt.status() }, 15*time.Minute)
	bt.env.ExecuteWorkflow(batchapi.RackBatchName, in)
	res := bt.result()

	// Mid-way the stuck server is seen in attention but still waited for.
	require.Equal(t, batchapi.BatchRunning, mid.State)
	require.Equal(t, 1, mid.Attention)
	require.False(t, mid.PerServer[1].Settled)
	require.Equal(t, serverapi.StepInspect, mid.PerServer[1].Step)

	require.Equal(t, batchapi.BatchFinished, res.State)
	require.Equal(t, batchapi.RackBatchStatus{
		BatchID: "b1", Site: "dc1", Rack: "R07", State: batchapi.BatchFinished,
		Total: 5, Installed: 2, Failed: 1, Aborted: 1, Attention: 1,
		PerServer: []batchapi.BatchServerState{
			{Serial: "OK-1", State: serverapi.StateInstalled, Settled: true},
			{Serial: "ATT-1", State: serverapi.StateAttention, Step: serverapi.StepInspect, Error: "BMC refused the credential: 401", Settled: true},
			{Serial: "FAIL-1", State: serverapi.StateFailed, Error: "rack unit occupied", Settled: true},
			{Serial: "ABORT-1", State: serverapi.StateAborted, Settled: true},
			{Serial: "OK-2", State: serverapi.StateInstalled, Settled: true},
		},
		PowerSlots: batchapi.PowerSlotsStatus{Limit: batchapi.DefaultPowerConcurrency, Holding: []string{}, Waiting: []string{}, Granted: 2, MaxHeld: 2},
	}, res)
}

func TestRackBatchWaitsForAServerThatRecoversWithinTheGrace(t *testing.T) {
	bt := newBatchTest(t, batchID)
	bt.rack.attentionFor = 40 * time.Minute
	in := batchOf("LATE-1", "OK-1")
	in.AttentionGrace = time.Hour
	bt.env.ExecuteWorkflow(batchapi.RackBatchName, in)
	res := bt.result()
	require.Equal(t, 2, res.Installed)
	require.Zero(t, res.Attention)
}

func TestRackBatchStopsWaitingForAttentionAfterTheGrace(t *testing.T) {
	bt := newBatchTest(t, batchID)
	bt.rack.attentionFor = 3 * time.Hour
	in := batchOf("LATE-1")
	in.AttentionGrace = time.Hour
	in.PollInterval = time.Minute
	bt.env.ExecuteWorkflow(batchapi.RackBatchName, in)
	res := bt.result()
	require.Equal(t, 1, res.Attention)
	require.True(t, res.PerServer[0].Settled)
	require.Zero(t, res.Installed, "reported as stuck, not waited for")
}

func TestRackBatchConcurrencyCountsOnlyUnsettledServers(t *testing.T) {
	// With one lifecycle at a time, a server stuck in attention holds the
	// rest back only for the grace; then the next one starts.
	bt := newBatchTest(t, batchID)
	in := batchOf("ATT-1", "OK-1", "OK-2")
	in.Concurrency = 1
	in.AttentionGrace = 10 * time.Minute
	in.PollInterval = time.Minute
	bt.env.ExecuteWorkflow(batchapi.RackBatchName, in)
	res := bt.result()
	require.Equal(t, 2, res.Installed)
	require.Equal(t, 1, res.Attention)
}

func TestRackBatchFreesTheSlotOfALifecycleThatEndsHoldingIt(t *testing.T) {
	bt := newBatchTest(t, batchID)
	in := batchOf("DROP-1", "OK-1", "OK-2")
	in.PowerConcurrency = 1
	bt.env.ExecuteWorkflow(batchapi.RackBatchName, in)
	res := bt.result()
	require.Equal(t, 2, res.Installed)
	require.Equal(t, 1, res.Failed)
	require.Equal(t, "worker lost the plot", res.PerServer[0].Error)
	require.Equal(t, 1, res.PowerSlots.MaxHeld)
}

func TestRackBatchReportsAServerThatAlreadyHasALifecycle(t *testing.T) {
	// In the test environment the only workflow that exists before the
	// batch is the batch itself, so it plays the server registered earlier.
	bt := newBatchTest(t, serverapi.LifecycleWorkflowID("OK-OLD"))
	bt.env.ExecuteWorkflow(batchapi.RackBatchName, batchOf("OK-OLD", "OK-1"))
	res := bt.result()
	require.Equal(t, 1, res.AlreadyExisting)
	require.Equal(t, 1, res.Installed)
	require.Equal(t, batchapi.BatchServerAlreadyExisting, res.PerServer[0].State)
	require.Contains(t, res.PerServer[0].Error, "already has a lifecycle")
	require.Len(t, bt.rack.inputs, 1, "the existing server is not started again")
}

func TestRackBatchRefusesInvalidInput(t *testing.T) {
	dupSerial := batchOf("OK-1", "OK-2")
	dupSerial.Servers[1].Serial = "OK-1"
	dupUnit := batchOf("OK-1", "OK-2")
	dupUnit.Servers[1].Location.Unit = 1
	otherRack := batchOf("OK-1")
	otherRack.Servers[0].Location.Rack = "R08"
	badUnit := batchOf("OK-1")
	badUnit.Servers[0].Location.Unit = 0
	cases := map[string]struct {
		in   batchapi.RackBatchInput
		want string
	}{
		"no servers":       {batchapi.RackBatchInput{BatchID: "b", Site: "dc1", Rack: "R07"}, "at least one server"},
		"no batch id":      {batchapi.RackBatchInput{Site: "dc1", Rack: "R07", Servers: batchOf("OK-1").Servers}, "batch id is required"},
		"duplicate serial": {dupSerial, "serial OK-1 is also servers[0]"},
		"duplicate unit":   {dupUnit, "unit 1 is also given to OK-1"},
		"another rack":     {otherRack, "not the batch's rack dc1/R07"},
		"unit 0":           {badUnit, "unit must be 1 or more"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			require.ErrorContains(t, batchapi.ValidateRackBatch(c.in), c.want)
		})
	}
	bt := newBatchTest(t, batchID)
	bt.env.ExecuteWorkflow(batchapi.RackBatchName, dupSerial)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(bt.env.GetWorkflowError(), &ae))
	require.Equal(t, "InvalidInput", ae.Type())
	require.Empty(t, bt.rack.inputs, "nothing started")
}

// A lifecycle started on its own (POST /api/v1/servers) has no batch: the
// power-slot helper runs the step at once and sends nothing.
func TestPowerSlotOutsideABatchIsANoOp(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	ran := false
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context) error {
		return WithPowerSlot(ctx, "", "SN-1", func() error { ran = true; return nil })
	}, workflow.RegisterOptions{Name: "standalone"})
	signalled := false
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).
		Run(func(mock.Arguments) { signalled = true }).Return(nil).Maybe()
	env.ExecuteWorkflow("standalone")
	require.NoError(t, env.GetWorkflowError())
	require.True(t, ran)
	require.False(t, signalled, "outside a batch nothing asks for a slot")
}

func TestPowerSlotKeeperGrantsInOrderAndIgnoresRepeats(t *testing.T) {
	// The keeper on its own, driven by signals as lifecycles would send
	// them; grants go to workflows the test environment does not know, so
	// they are mocked and recorded.
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var mu sync.Mutex
	var grants []string
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context) (batchapi.PowerSlotsStatus, error) {
		p := ServeRackPowerSlots(ctx, 2)
		if err := workflow.Sleep(ctx, time.Hour); err != nil {
			return batchapi.PowerSlotsStatus{}, err
		}
		return p.Status(), nil
	}, workflow.RegisterOptions{Name: "keeper"})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", batchapi.SignalPowerGranted, mock.Anything).Return(
		func(_ string, workflowID, _, _ string, arg any) error {
			mu.Lock()
			defer mu.Unlock()
			if workflowID == "server/GONE" {
				return errors.New("workflow not found")
			}
			grants = append(grants, arg.(batchapi.PowerSlotGrant).Token)
			return nil
		})
	req := func(serial, token string) batchapi.PowerSlotRequest {
		return batchapi.PowerSlotRequest{Serial: serial, WorkflowID: "server/" + serial, Token: token}
	}
	at := func(d time.Duration, name string, arg any) {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(name, arg) }, d)
	}
	at(1*time.Minute, batchapi.SignalPowerAcquire, req("A", "a1"))
	at(2*time.Minute, batchapi.SignalPowerAcquire, req("GONE", "g1")) // granted, undeliverable: freed
	at(3*time.Minute, batchapi.SignalPowerAcquire, req("B", "b1"))
	at(4*time.Minute, batchapi.SignalPowerAcquire, req("C", "c1"))
	at(5*time.Minute, batchapi.SignalPowerAcquire, req("C", "c1")) // a repeat: still one place in the queue
	at(6*time.Minute, batchapi.SignalPowerAcquire, req("A", "a1")) // a repeat of a held slot: granted again
	at(7*time.Minute, batchapi.SignalPowerRelease, batchapi.PowerSlotRelease{Serial: "B", Token: "stale"})
	at(8*time.Minute, batchapi.SignalPowerRelease, batchapi.PowerSlotRelease{Serial: "B", Token: "b1"})
	env.ExecuteWorkflow("keeper")
	require.NoError(t, env.GetWorkflowError())
	var st batchapi.PowerSlotsStatus
	require.NoError(t, env.GetWorkflowResult(&st))
	require.Equal(t, []string{"a1", "b1", "a1", "c1"}, grants)
	require.Equal(t, []string{"A", "C"}, st.Holding)
	require.Empty(t, st.Waiting)
	require.Equal(t, 2, st.MaxHeld)
}

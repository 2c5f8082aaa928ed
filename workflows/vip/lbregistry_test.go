package vip

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	vipactivities "github.com/metalflow/metalflow/activities/vip"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

type registryTest struct {
	t     *testing.T
	env   *testsuite.TestWorkflowEnvironment
	lb    *vipactivities.LoadBalancing
	mu    sync.Mutex
	wrote int
}

// newRegistryTest runs LBNodeRegistry with the real RecordLBNode on SQLite
// and counts the writes.
func newRegistryTest(t *testing.T) *registryTest {
	store, err := inventory.Open(context.Background(), inventory.DialectSQLite, filepath.Join(t.TempDir(), "inventory.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(LBNodeRegistry, workflow.RegisterOptions{Name: lbapi.RegistryWorkflowName})
	rt := &registryTest{t: t, env: env, lb: &vipactivities.LoadBalancing{Inventory: store}}
	rt.lb.Register(env)
	env.SetOnActivityCompletedListener(func(info *activity.Info, _ converter.EncodedValue, err error) {
		if info.ActivityType.Name == vipapi.RecordLBNodeName && err == nil {
			rt.mu.Lock()
			rt.wrote++
			rt.mu.Unlock()
		}
	})
	return rt
}

func (rt *registryTest) writes() int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.wrote
}

func (rt *registryTest) row() inventory.LBNode {
	rt.t.Helper()
	nodes, err := rt.lb.Inventory.ListLBNodes(context.Background())
	require.NoError(rt.t, err)
	require.Len(rt.t, nodes, 1)
	return nodes[0]
}

// up says whether ListLBClusters, what placement reads, counts the node up.
func (rt *registryTest) up() bool {
	rt.t.Helper()
	res, err := rt.lb.ListLBClusters(context.Background(), vipapi.ListLBClustersInput{})
	require.NoError(rt.t, err)
	require.Len(rt.t, res.Clusters, 1)
	return res.Clusters[0].Nodes[0].Up
}

func heartbeat(vips int) lbapi.NodeHeartbeat {
	return lbapi.NodeHeartbeat{Cluster: "c1", Node: "lb-1", FailureDomain: "dc1/A", Capacity: 100, VIPs: vips, Healthy: true}
}

// beat sends a heartbeat every 15 s of workflow time in [from, to); each
// heartbeat schedules the next (the test environment holds only so many
// pending callbacks).
func (rt *registryTest) beat(from, to time.Duration, hb func() lbapi.NodeHeartbeat) {
	var next func(at time.Duration)
	next = func(at time.Duration) {
		rt.env.SignalWorkflow(lbapi.SignalHeartbeat, hb())
		if at+vipapi.LBHeartbeatInterval < to {
			rt.env.RegisterDelayedCallback(func() { next(at + vipapi.LBHeartbeatInterval) }, vipapi.LBHeartbeatInterval)
		}
	}
	rt.env.RegisterDelayedCallback(func() { next(from) }, from)
}

func TestRegistryRecordsChangesNotEveryHeartbeatAndMarksASilentNodeDown(t *testing.T) {
	rt := newRegistryTest(t)
	vips := 3
	// Ten minutes of heartbeats; the VIP count changes once, at 5 min.
	rt.beat(time.Second, 10*time.Minute, func() lbapi.NodeHeartbeat { return heartbeat(vips) })
	rt.env.RegisterDelayedCallback(func() { vips = 4 }, 5*time.Minute)
	var writesAt10m int
	var upWhileBeating bool
	rt.env.RegisterDelayedCallback(func() {
		writesAt10m = rt.writes()
		upWhileBeating = rt.up()
	}, 10*time.Minute)
	// Then silence for a minute: three missed heartbeats.
	var silent inventory.LBNode
	var upWhileSilent bool
	var silentState vipapi.LBNodeRegistryState
	rt.env.RegisterDelayedCallback(func() {
		silent, upWhileSilent = rt.row(), rt.up()
		v, err := rt.env.QueryWorkflow(stepapi.QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&silentState))
	}, 11*time.Minute)
	// It comes back, then shuts down.
	var back bool
	rt.env.RegisterDelayedCallback(func() { rt.env.SignalWorkflow(lbapi.SignalHeartbeat, heartbeat(4)) }, 12*time.Minute)
	rt.env.RegisterDelayedCallback(func() { back = rt.up() }, 12*time.Minute+time.Second)
	rt.env.RegisterDelayedCallback(func() {
		hb := heartbeat(4)
		hb.Stopping = true
		rt.env.SignalWorkflow(lbapi.SignalHeartbeat, hb)
	}, 12*time.Minute+10*time.Second)
	rt.env.ExecuteWorkflow(lbapi.RegistryWorkflowName, vipapi.LBNodeRegistryInput{})
	require.True(t, rt.env.IsWorkflowCompleted())
	require.NoError(t, rt.env.GetWorkflowError(), "a node that says it stops ends its registry")

	// 40 heartbeats in ten minutes: the first, the change, and a refresh
	// every two minutes are written, nothing else.
	require.True(t, upWhileBeating)
	require.GreaterOrEqual(t, writesAt10m, 5)
	require.LessOrEqual(t, writesAt10m, 7, "most heartbeats change nothing and are not written")
	require.False(t, silent.Healthy, "silent for three heartbeat intervals: recorded down")
	require.Equal(t, 4, silent.VIPs)
	require.False(t, upWhileSilent, "placement sees it down")
	require.True(t, silentState.Down)
	require.True(t, back, "a heartbeat after the silence brings it back at once")
	final := rt.row()
	require.True(t, final.Stopping)
	require.False(t, rt.up(), "a stopping node is not placed on")
}

func TestRegistryContinuesAsNewAfterBoundedHeartbeats(t *testing.T) {
	rt := newRegistryTest(t)
	rt.beat(time.Second, time.Duration(registryHeartbeatsPerRun+5)*vipapi.LBHeartbeatInterval,
		func() lbapi.NodeHeartbeat { return heartbeat(2) })
	rt.env.ExecuteWorkflow(lbapi.RegistryWorkflowName, vipapi.LBNodeRegistryInput{})
	require.True(t, rt.env.IsWorkflowCompleted())
	err := rt.env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	require.True(t, errors.As(err, &can), "want continue-as-new, got %v", err)
	var next vipapi.LBNodeRegistryInput
	require.NoError(t, converter.GetDefaultDataConverter().FromPayloads(can.Input, &next))
	require.NotNil(t, next.Carried)
	require.Equal(t, "lb-1", next.Carried.Node)
	require.Equal(t, 2, next.Carried.Last.VIPs)
	require.NotNil(t, next.Carried.Recorded, "the next run knows what is recorded and writes no duplicate")
	// Unchanged heartbeats are written once per refresh interval only.
	refreshes := int(time.Duration(registryHeartbeatsPerRun) * vipapi.LBHeartbeatInterval / vipapi.LBNodeRefreshInterval)
	require.LessOrEqual(t, rt.writes(), refreshes+2)
}

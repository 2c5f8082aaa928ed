package vip

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/internal/wftest"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// addNode records one more up node in a cluster and gives the fleet it.
func (vt *vipTest) addNode(cluster, node, domain string) {
	vt.t.Helper()
	require.NoError(vt.t, vt.store.RecordLBNode(context.Background(), inventory.LBNode{
		Cluster: cluster, Node: node, FailureDomain: domain, Capacity: 100, Healthy: true, LastSeen: time.Now(),
	}))
	vt.fleet.add(cluster + "/" + node)
}

func (vt *vipTest) nodeUp(cluster, node string) {
	vt.env.SignalWorkflow(vipapi.SignalNodeUp, vipapi.NodeUp{Cluster: cluster, Node: node})
}

// callsSince is the fleet's calls after the first n.
func (vt *vipTest) callsSince(n int) []string {
	return slices.Clone(vt.fleet.callLog()[n:])
}

func nodesOf(st vipapi.VIPStatus, cluster string) map[string]string {
	out := map[string]string{}
	for _, c := range st.Placement {
		if c.Cluster == cluster {
			for _, n := range c.Nodes {
				out[n.Node] = n.State
			}
		}
	}
	return out
}

func TestVIPNodeThatComesUpAfterPlacementRunsTheVIP(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	var before int
	var after, final vipapi.VIPStatus
	var joinCalls []string
	var recorded []vipapi.VIPPlacement
	var reinstalled lbapi.VIPSpec
	var reinstalledHolds bool
	vt.at(time.Minute, func() {
		before = len(vt.fleet.callLog())
		// c2 gets a third node; c3/a was reinstalled and lost what it ran;
		// c1 is not the VIP's, and c2/z says it is up but the inventory
		// does not know it.
		vt.addNode("c2", "c", "dc1/A")
		vt.fleet.set("c3/a", func(n *fakeLBNode) { clear(n.vips) })
		vt.nodeUp("c2", "c")
		vt.nodeUp("c3", "a")
		vt.nodeUp("c1", "a")
		vt.nodeUp("c2", "z")
	})
	vt.at(2*time.Minute, func() {
		after = vt.status()
		joinCalls = vt.callsSince(before)
		reinstalled, reinstalledHolds = vt.fleet.spec("c3/a", "web")
		v, err := vt.store.GetVIP(context.Background(), "web")
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(v.Placement, &recorded))
		vt.update(vipapi.UpdateBackends, vipapi.BackendsInput{Remove: []string{"10.0.1.13"}})
	})
	vt.at(3*time.Minute, func() {
		final = vt.status()
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	vt.result()

	require.Equal(t, vipapi.VIPStateActive, after.State)
	require.Equal(t, map[string]string{"a": vipapi.NodeAnnounced, "b": vipapi.NodeAnnounced, "c": vipapi.NodeAnnounced}, nodesOf(after, "c2"))
	requireEveryNode(t, after, vipapi.NodeAnnounced)
	require.Equal(t, []string{"c2", "c3"}, placedClusters(after), "a node of an unplaced cluster does not pull the VIP there")
	require.True(t, reinstalledHolds, "the reinstalled node runs the VIP again")
	require.Equal(t, after.Digest, lbapi.Digest(reinstalled))
	slices.Sort(joinCalls)
	require.Equal(t, []string{"c2/c apply", "c2/c probe", "c2/c report", "c3/a apply", "c3/a probe", "c3/a report"}, joinCalls,
		"only the nodes that came up are touched, each verified and probed; nothing for c1 or an unknown node")
	require.Contains(t, recorded, vipapi.VIPPlacement{Cluster: "c2", FailureDomain: "dc1/A", Nodes: []string{"a", "b", "c"}},
		"the inventory's placement names the new node")

	// The next change reaches the new node with the others; retire
	// removes it there too.
	require.Len(t, final.Backends, 2)
	requireEveryNode(t, final, vipapi.NodeAnnounced)
	require.Equal(t, map[string]string{"a": vipapi.NodeAnnounced, "b": vipapi.NodeAnnounced, "c": vipapi.NodeAnnounced}, nodesOf(final, "c2"))
	require.Empty(t, vt.heldBy("web"))
}

func TestVIPNodeThatFailsToJoinParksUntilRetriedOrAborted(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	var parked, retried, aborted vipapi.VIPStatus
	var busy *wftest.UpdateOutcome
	vt.at(time.Minute, func() {
		vt.addNode("c2", "c", "dc1/A")
		vt.addNode("c3", "c", "dc2/A")
		vt.fleet.set("c2/c", func(n *fakeLBNode) { n.wrongDigest = true })
		vt.fleet.set("c3/c", func(n *fakeLBNode) { n.failApplies = 100 })
		vt.nodeUp("c2", "c")
		vt.nodeUp("c3", "c")
	})
	vt.at(10*time.Minute, func() {
		parked = vt.status()
		busy = vt.update(vipapi.UpdateBackends, vipapi.BackendsInput{Remove: []string{"10.0.1.13"}})
		// c2/c is mended; c3/c is not.
		vt.fleet.set("c2/c", func(n *fakeLBNode) { n.wrongDigest = false })
		vt.update(stepapi.UpdateRetry, serverapi.RetryInput{By: "ops"})
	})
	vt.at(20*time.Minute, func() {
		retried = vt.status()
		vt.update(stepapi.UpdateAbort, stepapi.AbortInput{By: "ops", Reason: "c3/c goes back to the vendor"})
	})
	vt.at(30*time.Minute, func() {
		aborted = vt.status()
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	vt.result()

	require.Equal(t, vipapi.VIPStateAttention, parked.State)
	require.Equal(t, vipapi.VIPStepJoinNodes, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "c2/c")
	require.Contains(t, parked.Attention.Error, "c3/c")
	require.Error(t, busy.Rejected, "no other change while the VIP waits for staff")
	require.Equal(t, vipapi.NodeRolledBack, nodesOf(parked, "c2")["c"])
	require.Equal(t, vipapi.NodeAnnounced, nodesOf(parked, "c2")["a"], "the nodes that ran the VIP keep running it")

	require.Equal(t, vipapi.VIPStateAttention, retried.State, "c3/c still fails")
	require.NotContains(t, retried.Attention.Error, "c2/c")
	require.Equal(t, vipapi.NodeAnnounced, nodesOf(retried, "c2")["c"], "the retry joined the mended node")

	require.Equal(t, vipapi.VIPStateActive, aborted.State)
	require.NotContains(t, nodesOf(aborted, "c3"), "c", "an aborted join leaves the node out of the placement")
	requireEveryNode(t, aborted, vipapi.NodeAnnounced)
	require.True(t, slices.ContainsFunc(aborted.Warnings, func(w string) bool {
		return strings.Contains(w, "c3/c") && strings.Contains(w, "stays out")
	}), "%v", aborted.Warnings)
	_, held := vt.fleet.spec("c3/c", "web")
	require.False(t, held)
	require.Empty(t, vt.heldBy("web"))
}

// The registry tells the VIPs placed on its node's cluster when the node
// comes up: the first time it is recorded, and again after it was down;
// not on every heartbeat.
func TestRegistryTellsTheClustersVIPsWhenItsNodeComesUp(t *testing.T) {
	rt := newRegistryTest(t)
	ctx := context.Background()
	for name, cluster := range map[string]string{"web": "c1", "db": "c2", "api": "c1"} {
		_, err := rt.lb.Inventory.AllocateVIPAddress(ctx, name, "internal", netip.MustParsePrefix("10.96.0.0/24"))
		require.NoError(t, err)
		placement, err := json.Marshal([]vipapi.VIPPlacement{{Cluster: "c9", Nodes: []string{"x"}}, {Cluster: cluster, Nodes: []string{"lb-0"}}})
		require.NoError(t, err)
		require.NoError(t, rt.lb.Inventory.RecordVIP(ctx, inventory.VIPRecord{Name: name, State: vipapi.VIPStateActive, Spec: json.RawMessage(`{}`), Placement: placement}))
	}
	var told []string
	rt.env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, "", vipapi.SignalNodeUp, mock.Anything).Return(
		func(_, id, _, _ string, arg any) error {
			up := arg.(vipapi.NodeUp)
			told = append(told, id+" "+up.Cluster+"/"+up.Node)
			if id == "vip/api" {
				return errors.New("workflow not found")
			}
			return nil
		})
	var first, steady []string
	rt.beat(0, 2*time.Minute, func() lbapi.NodeHeartbeat { return heartbeat(2) })
	rt.env.RegisterDelayedCallback(func() { first = slices.Clone(told) }, 30*time.Second)
	rt.env.RegisterDelayedCallback(func() { steady = slices.Clone(told) }, 5*time.Minute)
	// Silent from 2 to 6 minutes (recorded down), then back.
	rt.beat(6*time.Minute, 7*time.Minute, func() lbapi.NodeHeartbeat { return heartbeat(2) })
	rt.env.RegisterDelayedCallback(func() {
		rt.env.SignalWorkflow(lbapi.SignalHeartbeat, lbapi.NodeHeartbeat{Cluster: "c1", Node: "lb-1", Stopping: true})
	}, 8*time.Minute)
	rt.env.ExecuteWorkflow(lbapi.RegistryWorkflowName, vipapi.LBNodeRegistryInput{})
	require.NoError(t, rt.env.GetWorkflowError())

	want := []string{"vip/api c1/lb-1", "vip/web c1/lb-1"}
	slices.Sort(first)
	require.Equal(t, want, first, "the VIPs placed on c1, not db on c2; a VIP that is gone does not stop the others")
	require.Equal(t, first, sortedCopy(steady), "nothing more while the node stays up")
	slices.Sort(told)
	require.Equal(t, []string{"vip/api c1/lb-1", "vip/api c1/lb-1", "vip/web c1/lb-1", "vip/web c1/lb-1"}, told,
		"told again when it came back after being down")
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

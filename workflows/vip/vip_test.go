package vip

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/internal/wftest"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

func TestVIPRolloutCanaryFirstThenClusterByCluster(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	var running vipapi.VIPStatus
	var retire *wftest.UpdateOutcome
	vt.at(time.Minute, func() { running = vt.status() })
	vt.at(2*time.Minute, func() { retire = vt.update(vipapi.UpdateRetire, vipapi.RetireInput{By: "alice", Reason: "done"}) })
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	final := vt.result()

	require.Equal(t, vipapi.VIPStateActive, running.State)
	require.Equal(t, "10.96.0.1", running.Address, "lowest free address of the internal pool")
	require.Equal(t, []string{"c2", "c3"}, placedClusters(running),
		"least loaded first, and c1 passed over: it shares c2's failure domain")
	require.Equal(t, lbapi.AnnounceInternal, running.Announce)
	requireEveryNode(t, running, vipapi.NodeAnnounced)
	require.False(t, running.AwaitingApproval)

	// The canary (c2/a) is programmed unannounced, verified and probed
	// before anything else happens; the rest of c2 follows; c2 is
	// announced before c3 is touched.
	calls := vt.fleet.callLog()
	require.Equal(t, []string{"c2/a apply", "c2/a report", "c2/a probe", "c2/b apply", "c2/b report"}, calls[:5])
	firstC3 := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "c3/") })
	applies := vt.fleet.applyLog()
	for i, a := range applies[:4] {
		require.True(t, strings.HasPrefix(a.Node, "c2/"), "apply %d on %s before c2 was done", i, a.Node)
	}
	require.Equal(t, lbapi.AnnounceNone, applies[0].Spec.Announce, "the canary is not announced before it is verified")
	require.Equal(t, lbapi.AnnounceInternal, applies[2].Spec.Announce)
	require.Equal(t, lbapi.AnnounceInternal, applies[3].Spec.Announce)
	require.Greater(t, firstC3, 8)
	for _, a := range applies {
		require.NotEqual(t, lbapi.AnnouncePublic, a.Spec.Announce, "an internal VIP is never published")
		require.Equal(t, "10.96.0.1", a.Spec.Address)
	}
	require.NotContains(t, strings.Join(calls, ","), "c1/", "an unplaced cluster is never touched")

	// Retire: removed everywhere, address released.
	require.NoError(t, retire.Refused())
	require.Equal(t, vipapi.VIPStateRetired, final.State)
	require.Empty(t, vt.heldBy("web"))
	_, err := vt.store.GetVIP(context.Background(), "web")
	require.ErrorIs(t, err, inventory.ErrNotFound)
	a, err := vt.store.AllocateVIPAddress(context.Background(), "next", "internal", netip.MustParsePrefix("10.96.0.0/24"))
	require.NoError(t, err)
	require.Equal(t, "10.96.0.1", a.String(), "the retired VIP's address is free again")
}

func TestVIPPlacementRefusesOneFailureDomainUntilRetried(t *testing.T) {
	vt := newVIPTest(t)
	vt.cluster("c1", "dc1/A", 0)
	vt.cluster("c2", "dc1/A", 0)
	var parked vipapi.VIPStatus
	var retry *wftest.UpdateOutcome
	vt.at(time.Minute, func() {
		parked = vt.status()
		// A cluster in another domain comes up; retry re-reads.
		vt.cluster("c9", "dc9/A", 0)
		retry = vt.update(stepapi.UpdateRetry, serverapi.RetryInput{By: "ops"})
	})
	vt.at(2*time.Minute, func() { vt.update(vipapi.UpdateRetire, vipapi.RetireInput{}) })
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	vt.result()

	require.Equal(t, vipapi.VIPStateAttention, parked.State)
	require.Equal(t, vipapi.VIPStepPlace, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "different failure domains")
	require.Empty(t, parked.Placement)
	require.NoError(t, retry.Refused())
	applies := vt.fleet.applyLog()
	require.NotEmpty(t, applies)
	nodes := map[string]bool{}
	for _, a := range applies {
		nodes[strings.Split(a.Node, "/")[0]] = true
	}
	require.True(t, nodes["c9"])
	require.Len(t, nodes, 2, "one cluster per failure domain")
}

func TestVIPCanaryFailureRollsBackThenRetrySucceeds(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	// c2 goes through; c3's canary answers a digest it was not asked for.
	vt.fleet.set("c3/a", func(n *fakeLBNode) { n.wrongDigest = true })
	var parked vipapi.VIPStatus
	var held, calls []string
	var backendsUpdate, abortNoReason *wftest.UpdateOutcome
	vt.at(time.Minute, func() {
		parked = vt.status()
		held = vt.heldBy("web")
		calls = vt.fleet.callLog()
		abortNoReason = vt.update(stepapi.UpdateAbort, stepapi.AbortInput{})
		backendsUpdate = vt.update(vipapi.UpdateBackends, vipapi.BackendsInput{Remove: []string{"10.0.1.13"}})
		vt.fleet.set("c3/a", func(n *fakeLBNode) { n.wrongDigest = false })
		vt.update(stepapi.UpdateRetry, serverapi.RetryInput{By: "ops"})
	})
	var running vipapi.VIPStatus
	vt.at(2*time.Minute, func() {
		running = vt.status()
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	vt.result()

	require.Equal(t, vipapi.VIPStateAttention, parked.State)
	require.Equal(t, vipapi.VIPStepRollOut, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "canary c3/a")
	require.Contains(t, parked.Attention.Error, "digest")
	require.Empty(t, held, "c2's nodes and c3's canary were rolled back: the new VIP is on no node")
	for _, c := range parked.Placement {
		for _, n := range c.Nodes {
			if c.Cluster == "c3" && n.Node == "b" {
				require.Equal(t, vipapi.NodePending, n.State, "c3/b was never touched")
				continue
			}
			require.Equal(t, vipapi.NodeRolledBack, n.State, "%s/%s", c.Cluster, n.Node)
		}
	}
	for _, node := range []string{"c2/a", "c2/b", "c3/a"} {
		require.Contains(t, calls, node+" remove")
	}
	require.NotContains(t, calls, "c3/b apply")
	require.ErrorContains(t, abortNoReason.Refused(), "reason")
	require.ErrorContains(t, backendsUpdate.Refused(), "attention", "no change while the VIP waits for a decision")

	require.Equal(t, vipapi.VIPStateActive, running.State)
	requireEveryNode(t, running, vipapi.NodeAnnounced)
}

func TestVIPFailedChangeRollsBackToThePreviousSpec(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	var before vipapi.VIPStatus
	var change, abort *wftest.UpdateOutcome
	vt.at(time.Minute, func() {
		before = vt.status()
		// The canary's probe packet goes nowhere after the change.
		vt.fleet.set("c2/a", func(n *fakeLBNode) { n.dropProbes = true })
		change = vt.update(vipapi.UpdateBackends, vipapi.BackendsInput{Add: []lbapi.Backend{{Address: "10.0.1.14"}}, By: "bob"})
	})
	var parked, after vipapi.VIPStatus
	var specA lbapi.VIPSpec
	others := map[string]string{}
	vt.at(2*time.Minute, func() {
		parked = vt.status()
		specA, _ = vt.fleet.spec("c2/a", "web")
		abort = vt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "backend not ready", By: "bob"})
	})
	vt.at(3*time.Minute, func() {
		after = vt.status()
		for _, node := range []string{"c2/b", "c3/a", "c3/b"} {
			if s, ok := vt.fleet.spec(node, "web"); ok {
				others[node] = lbapi.Digest(s)
			}
		}
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	vt.result()

	require.Error(t, change.Refused())
	require.Contains(t, change.Refused().Error(), "rolled back")
	require.Equal(t, vipapi.VIPStateAttention, parked.State)
	require.Equal(t, vipapi.VIPStepBackends, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "probe was not forwarded")
	require.Equal(t, before.Digest, lbapi.Digest(specA), "the canary runs the previous spec again")
	require.NoError(t, abort.Refused())
	require.Equal(t, vipapi.VIPStateActive, after.State)
	require.Equal(t, before.Digest, after.Digest, "abort keeps the previous backends")
	require.Len(t, after.Backends, 3)
	require.Equal(t, map[string]string{"c2/b": before.Digest, "c3/a": before.Digest, "c3/b": before.Digest}, others,
		"the nodes after the canary were never changed")
}

func TestVIPPublicWaitsForApprovalFromSomeoneElse(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	in := webInput()
	in.Exposure = lbapi.ExposurePublic
	var waiting vipapi.VIPStatus
	var appliesBeforeApproval int
	refused := map[string]*wftest.UpdateOutcome{}
	var approve *wftest.UpdateOutcome
	vt.at(time.Hour, func() {
		waiting = vt.status()
		refused["requester"] = vt.update(vipapi.UpdateApprove, vipapi.ApproveInput{By: "alice", Role: vipapi.RoleApprover})
		refused["requester-case"] = vt.update(vipapi.UpdateApprove, vipapi.ApproveInput{By: "Alice", Role: vipapi.RoleAdmin})
		refused["viewer"] = vt.update(vipapi.UpdateApprove, vipapi.ApproveInput{By: "bob", Role: "viewer"})
		refused["operator"] = vt.update(vipapi.UpdateApprove, vipapi.ApproveInput{By: "bob", Role: "operator"})
		refused["anonymous"] = vt.update(vipapi.UpdateApprove, vipapi.ApproveInput{Role: vipapi.RoleApprover})
		refused["retry"] = vt.update(stepapi.UpdateRetry, serverapi.RetryInput{})
	})
	var stillWaiting vipapi.VIPStatus
	vt.at(2*time.Hour, func() {
		stillWaiting = vt.status()
		appliesBeforeApproval = len(vt.fleet.applyLog())
		approve = vt.update(vipapi.UpdateApprove, vipapi.ApproveInput{By: "carol", Role: vipapi.RoleApprover})
	})
	var published vipapi.VIPStatus
	var second *wftest.UpdateOutcome
	vt.at(3*time.Hour, func() {
		published = vt.status()
		second = vt.update(vipapi.UpdateApprove, vipapi.ApproveInput{By: "dave", Role: vipapi.RoleAdmin})
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, in)
	vt.result()

	require.Equal(t, vipapi.VIPStateAwaitingApproval, waiting.State)
	require.True(t, waiting.AwaitingApproval)
	require.Equal(t, "198.51.100.1", waiting.Address, "a public VIP's address comes from the public pool")
	require.Equal(t, lbapi.AnnounceInternal, waiting.Announce, "rolled out with internal scope meanwhile")
	requireEveryNode(t, waiting, vipapi.NodeAnnounced)
	for who, o := range refused {
		require.Error(t, o.Rejected, "%s must be refused by the validator", who)
	}
	require.Contains(t, refused["requester"].Rejected.Error(), "someone else")
	require.Contains(t, refused["viewer"].Rejected.Error(), "approver or admin")
	require.Equal(t, vipapi.VIPStateAwaitingApproval, stillWaiting.State, "refused approvals change nothing")

	require.NoError(t, approve.Refused())
	require.Equal(t, vipapi.VIPStateActive, published.State)
	require.Equal(t, "carol", published.ApprovedBy)
	require.False(t, published.AwaitingApproval)
	require.Equal(t, lbapi.AnnouncePublic, published.Announce)
	requireEveryNode(t, published, vipapi.NodeAnnounced)
	require.Error(t, second.Rejected, "nothing awaits approval any more")

	applies := vt.fleet.applyLog()
	require.Greater(t, len(applies), appliesBeforeApproval)
	for i, a := range applies {
		if i < appliesBeforeApproval {
			require.NotEqual(t, lbapi.AnnouncePublic, a.Spec.Announce, "apply %d on %s published before the approval", i, a.Node)
		}
	}
	// Publication keeps the canary discipline: the first public apply is
	// verified on its node before any other node is published.
	pub := applies[appliesBeforeApproval:]
	require.Equal(t, lbapi.AnnouncePublic, pub[0].Spec.Announce)
	calls := vt.fleet.callLog()
	applyAt, seen := -1, 0
	for i, c := range calls {
		if strings.HasSuffix(c, " apply") {
			if seen == appliesBeforeApproval {
				applyAt = i
				break
			}
			seen++
		}
	}
	require.Positive(t, applyAt)
	require.Equal(t, []string{pub[0].Node + " apply", pub[0].Node + " report", pub[0].Node + " probe"}, calls[applyAt:applyAt+3])
}

func TestVIPFailedPublicationFallsBackToInternal(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	in := webInput()
	in.Exposure = lbapi.ExposurePublic
	var internal vipapi.VIPStatus
	var approve *wftest.UpdateOutcome
	vt.at(time.Hour, func() {
		internal = vt.status()
		// The canary's BGP speaker keeps the route out of its RIB.
		vt.fleet.set("c2/a", func(n *fakeLBNode) { n.routeStuck = true })
		approve = vt.update(vipapi.UpdateApprove, vipapi.ApproveInput{By: "carol", Role: vipapi.RoleApprover})
	})
	var parked, aborted vipapi.VIPStatus
	var scopes []string
	vt.at(2*time.Hour, func() {
		parked = vt.status()
		vt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "route reflector broken", By: "ops"})
	})
	vt.at(3*time.Hour, func() {
		aborted = vt.status()
		for _, n := range []string{"c2/a", "c2/b", "c3/a", "c3/b"} {
			s, _ := vt.fleet.spec(n, "web")
			scopes = append(scopes, s.Announce)
		}
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, in)
	vt.result()

	require.ErrorContains(t, approve.Refused(), "rolled back")
	require.Equal(t, vipapi.VIPStateAttention, parked.State)
	require.Equal(t, vipapi.VIPStepPublish, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, `canary c2/a: the node announces "", want "public"`)
	require.Equal(t, vipapi.VIPStateAwaitingApproval, aborted.State)
	require.True(t, aborted.AwaitingApproval)
	require.Empty(t, aborted.ApprovedBy)
	require.Equal(t, lbapi.AnnounceInternal, aborted.Announce)
	require.Equal(t, internal.Digest, aborted.Digest)
	internalScope := []string{lbapi.AnnounceInternal, lbapi.AnnounceInternal, lbapi.AnnounceInternal, lbapi.AnnounceInternal}
	require.Equal(t, internalScope, scopes, "the canary was put back to internal; no other node was published")
}

func TestVIPRejectRetiresThePublicVIP(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	in := webInput()
	in.Exposure = lbapi.ExposurePublic
	var ownReject, reject *wftest.UpdateOutcome
	vt.at(time.Hour, func() {
		ownReject = vt.update(vipapi.UpdateReject, vipapi.RejectInput{By: "alice", Role: vipapi.RoleAdmin, Reason: "changed my mind"})
		reject = vt.update(vipapi.UpdateReject, vipapi.RejectInput{By: "carol", Role: vipapi.RoleApprover, Reason: "no business case"})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, in)
	final := vt.result()

	require.Error(t, ownReject.Rejected)
	require.NoError(t, reject.Refused())
	require.Equal(t, vipapi.VIPStateRejected, final.State)
	require.Empty(t, vt.heldBy("web"))
	_, err := vt.store.GetVIP(context.Background(), "web")
	require.ErrorIs(t, err, inventory.ErrNotFound, "the address is released")
	for _, a := range vt.fleet.applyLog() {
		require.NotEqual(t, lbapi.AnnouncePublic, a.Spec.Announce, "a rejected VIP is never published")
	}
}

func TestVIPBackendsChangeReachesEveryNode(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	var bad, change *wftest.UpdateOutcome
	var before vipapi.VIPStatus
	vt.at(time.Minute, func() {
		before = vt.status()
		bad = vt.update(vipapi.UpdateBackends, vipapi.BackendsInput{Remove: []string{"10.9.9.9"}})
		change = vt.update(vipapi.UpdateBackends, vipapi.BackendsInput{
			Add: []lbapi.Backend{{Address: "10.0.1.14", Weight: 200}}, Drain: []string{"10.0.1.12"}, Remove: []string{"10.0.1.13"}, By: "bob",
		})
	})
	var after vipapi.VIPStatus
	var specs []lbapi.VIPSpec
	vt.at(2*time.Minute, func() {
		after = vt.status()
		for _, node := range []string{"c2/a", "c2/b", "c3/a", "c3/b"} {
			s, ok := vt.fleet.spec(node, "web")
			require.True(t, ok, node)
			specs = append(specs, s)
		}
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	vt.result()

	require.ErrorContains(t, bad.Rejected, "not a backend of this VIP")
	require.NoError(t, change.Refused())
	require.Equal(t, vipapi.VIPStateActive, after.State)
	require.NotEqual(t, before.Digest, after.Digest)
	requireEveryNode(t, after, vipapi.NodeAnnounced)
	want := []lbapi.Backend{
		{Address: "10.0.1.11", Weight: 100, State: lbapi.BackendActive},
		{Address: "10.0.1.12", Weight: 100, State: lbapi.BackendDrain},
		{Address: "10.0.1.14", Weight: 200, State: lbapi.BackendActive},
	}
	for _, s := range specs {
		require.Equal(t, want, s.Backends)
		require.Equal(t, lbapi.AnnounceInternal, s.Announce)
	}
}

func TestVIPBackendHealthFromOneNodeDrainsOnEveryNode(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	signal := func(healthy bool, node string) {
		vt.env.SignalWorkflow(lbapi.SignalBackendHealth, lbapi.BackendHealthChange{
			VIP: "web", Backend: "10.0.1.12", Healthy: healthy, Cluster: "c3", Node: node,
		})
	}
	backendState := func(node string) string {
		s, _ := vt.fleet.spec(node, "web")
		for _, b := range s.Backends {
			if b.Address == "10.0.1.12" {
				return b.State
			}
		}
		return "missing"
	}
	everyNode := func() []string {
		var out []string
		for _, n := range []string{"c2/a", "c2/b", "c3/a", "c3/b"} {
			out = append(out, backendState(n))
		}
		return out
	}
	var down, stillDown, up []string
	var downStatus vipapi.VIPStatus
	vt.at(time.Minute, func() { signal(false, "b") })
	vt.at(2*time.Minute, func() {
		down, downStatus = everyNode(), vt.status()
		signal(false, "a")
		signal(true, "b")
	})
	vt.at(3*time.Minute, func() {
		stillDown = everyNode()
		signal(true, "a")
	})
	vt.at(4*time.Minute, func() {
		up = everyNode()
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	vt.result()

	drained := []string{lbapi.BackendDrain, lbapi.BackendDrain, lbapi.BackendDrain, lbapi.BackendDrain}
	require.Equal(t, drained, down, "one node's verdict drains the backend on every node of every cluster")
	require.Equal(t, vipapi.VIPStateActive, downStatus.State)
	for _, b := range downStatus.Backends {
		if b.Address == "10.0.1.12" {
			require.Equal(t, vipapi.BackendDown, b.Health)
			require.Equal(t, []string{"c3/b"}, b.DownOn)
		} else {
			require.Equal(t, vipapi.BackendUp, b.Health)
		}
	}
	require.Equal(t, drained, stillDown, "down while any node still sees it down")
	active := []string{lbapi.BackendActive, lbapi.BackendActive, lbapi.BackendActive, lbapi.BackendActive}
	require.Equal(t, active, up, "restored once every node sees it up")
}

func TestVIPSpreadWarning(t *testing.T) {
	spread := func(st vipapi.VIPStatus) bool {
		return slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, "failure domain") })
	}
	for name, racks := range map[string][]string{"one rack": {"R01", "R01"}, "two racks": {"R01", "R02"}} {
		t.Run(name, func(t *testing.T) {
			vt := newVIPTest(t)
			vt.standardClusters()
			vt.server("SN-1", racks[0], "10.0.2.1")
			vt.server("SN-2", racks[1], "10.0.2.2")
			vt.server("SN-3", "R05", "10.0.2.3")
			in := webInput()
			in.Backends, in.Servers = nil, []string{"SN-1", "SN-2"}
			var st, spreadOut vipapi.VIPStatus
			var add *wftest.UpdateOutcome
			vt.at(time.Minute, func() {
				st = vt.status()
				add = vt.update(vipapi.UpdateBackends, vipapi.BackendsInput{Servers: []string{"SN-3"}})
			})
			vt.at(2*time.Minute, func() {
				spreadOut = vt.status()
				vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
			})
			vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, in)
			vt.result()

			require.Equal(t, vipapi.VIPStateActive, st.State)
			require.Len(t, st.Backends, 2)
			require.Equal(t, "SN-1", st.Backends[0].Serial)
			require.Equal(t, "10.0.2.1", st.Backends[0].Address)
			require.Equal(t, "dc1/A/"+racks[0], st.Backends[0].FailureDomain)
			require.Equal(t, racks[0] == racks[1], spread(st), "warnings: %v", st.Warnings)
			require.NoError(t, add.Refused())
			require.Len(t, spreadOut.Backends, 3)
			require.False(t, spread(spreadOut), "a server in another rack ends the warning: %v", spreadOut.Warnings)
		})
	}
}

func TestVIPBadInputHoldsNothing(t *testing.T) {
	cases := map[string]func(*vipapi.VIPRolloutInput){
		"name":      func(in *vipapi.VIPRolloutInput) { in.Name = "Web_1" },
		"port 0":    func(in *vipapi.VIPRolloutInput) { in.Ports = []uint16{0} },
		"no pool":   func(in *vipapi.VIPRolloutInput) { in.Backends = nil },
		"weight":    func(in *vipapi.VIPRolloutInput) { in.Backends[0].Weight = 2_000_000 },
		"exposure":  func(in *vipapi.VIPRolloutInput) { in.Exposure = "everyone" },
		"anonymous": func(in *vipapi.VIPRolloutInput) { in.Exposure, in.RequestedBy = lbapi.ExposurePublic, "" },
		"unknown server": func(in *vipapi.VIPRolloutInput) {
			in.Servers = []string{"SN-404"}
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			vt := newVIPTest(t)
			vt.standardClusters()
			in := webInput()
			mutate(&in)
			vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, in)
			require.True(t, vt.env.IsWorkflowCompleted())
			err := vt.env.GetWorkflowError()
			require.Error(t, err)
			var ae *temporal.ApplicationError
			require.True(t, errors.As(err, &ae), "%v", err)
			require.Equal(t, "InvalidInput", ae.Type())
			vips, lerr := vt.store.ListVIPs(context.Background())
			require.NoError(t, lerr)
			require.Empty(t, vips, "no address held")
			require.Empty(t, vt.fleet.callLog(), "no node touched")
		})
	}
}

func TestVIPNodeWithoutBGPIsAcceptedWithAWarning(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	vt.fleet.set("c3/b", func(n *fakeLBNode) { n.noBGP = true })
	var st vipapi.VIPStatus
	vt.at(time.Minute, func() {
		st = vt.status()
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	vt.result()
	require.Equal(t, vipapi.VIPStateActive, st.State)
	require.True(t, slices.ContainsFunc(st.Warnings, func(w string) bool { return strings.Contains(w, "c3/b has no BGP peers") }), "%v", st.Warnings)
}

func TestVIPRouteMissingFromAPeeredNodeFailsTheRollout(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	vt.fleet.set("c3/b", func(n *fakeLBNode) { n.routeStuck = true })
	var parked vipapi.VIPStatus
	var held []string
	vt.at(time.Hour, func() {
		parked, held = vt.status(), vt.heldBy("web")
		vt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "c3/b's BGP is broken", By: "ops"})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	final := vt.result()

	require.Equal(t, vipapi.VIPStateAttention, parked.State)
	require.Contains(t, parked.Attention.Error, `c3/b: the node announces "", want "internal"`)
	require.Empty(t, held, "rolled back everywhere")
	reports := 0
	for _, c := range vt.fleet.callLog() {
		if c == "c3/b report" {
			reports++
		}
	}
	require.Equal(t, 1+routeChecks, reports, "programmed once, then the route is given a few checks")
	require.Equal(t, vipapi.VIPStateAborted, final.State)
}

func TestVIPDeadNodeEndsInAttentionNotAHang(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	vt.fleet.set("c2/b", func(n *fakeLBNode) { n.down = true })
	var parked vipapi.VIPStatus
	var retire *wftest.UpdateOutcome
	vt.at(time.Hour, func() {
		parked = vt.status()
		retire = vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
		// It answers again in time for the abort to clean it up: nothing
		// is released while a node may hold the VIP.
		vt.fleet.set("c2/b", func(n *fakeLBNode) { n.down = false })
		vt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "node c2/b was replaced", By: "ops"})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	final := vt.result()

	require.Equal(t, vipapi.VIPStateAttention, parked.State)
	require.Contains(t, parked.Attention.Error, "c2/b")
	require.Error(t, retire.Rejected, "retire is for a running VIP; abort ends a new one")
	calls := vt.fleet.callLog()
	n := 0
	for _, c := range calls {
		if c == "c2/b apply" {
			n++
		}
	}
	require.Equal(t, 3, n, "the apply is tried a bounded number of times")
	require.Equal(t, vipapi.VIPStateAborted, final.State)
	require.Empty(t, vt.heldBy("web"))
	vips, err := vt.store.ListVIPs(context.Background())
	require.NoError(t, err)
	require.Empty(t, vips, "the aborted VIP's address is released")
}

func TestVIPStuckRetireForgetsOnlyNodesReportedDown(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	var retire *wftest.UpdateOutcome
	vt.at(time.Minute, func() {
		vt.fleet.set("c2/b", func(n *fakeLBNode) { n.down = true })
		retire = vt.update(vipapi.UpdateRetire, vipapi.RetireInput{By: "alice"})
	})
	var stuck, stillStuck vipapi.VIPStatus
	vt.at(2*time.Minute, func() {
		stuck = vt.status()
		// The inventory still has c2/b up: nothing may be forgotten.
		vt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "c2/b is gone", By: "ops"})
	})
	vt.at(3*time.Minute, func() {
		stillStuck = vt.status()
		// Its registry records it down.
		require.NoError(t, vt.store.RecordLBNode(context.Background(), inventory.LBNode{
			Cluster: "c2", Node: "b", FailureDomain: "dc1/A", Capacity: 100, Healthy: false, LastSeen: time.Now(),
		}))
		vt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "c2/b is gone", By: "ops"})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	final := vt.result()

	require.Equal(t, vipapi.VIPStateAttention, stuck.State)
	require.Equal(t, vipapi.VIPStepRetire, stuck.Attention.Step)
	require.Contains(t, stuck.Attention.Error, "c2/b")
	require.Equal(t, vipapi.VIPStateAttention, stillStuck.State, "an abort forgets no node the inventory reports up")
	require.Equal(t, vipapi.VIPStateRetired, final.State)
	require.ErrorContains(t, retire.Err, "Retire did not complete; VIP web waits for attention", "the update answers when the retire parks")
	require.True(t, slices.ContainsFunc(final.Warnings, func(w string) bool { return strings.Contains(w, "node c2/b was down") }), "%v", final.Warnings)
	require.Equal(t, []string{"c2/b"}, vt.heldBy("web"), "only the forgotten node may still hold it")
	_, err := vt.store.GetVIP(context.Background(), "web")
	require.ErrorIs(t, err, inventory.ErrNotFound)
}

func TestVIPResumesFromCarriedState(t *testing.T) {
	// Continue-as-new is only suggested by a real server's history size;
	// the run it starts is driven here directly with a carried state.
	vt := newVIPTest(t)
	vt.standardClusters()
	spec := lbapi.VIPSpec{Name: "web", Address: "10.96.0.7", Protocol: "tcp", Ports: []uint16{443, 80}, Announce: lbapi.AnnounceInternal,
		Backends: []lbapi.Backend{{Address: "10.0.1.11", Weight: 100, State: lbapi.BackendActive}}}
	for _, n := range []string{"c2/a", "c2/b"} {
		vt.fleet.set(n, func(f *fakeLBNode) { f.vips["web"] = spec })
	}
	_, err := vt.store.AllocateVIPAddress(context.Background(), "web", "internal", netip.MustParsePrefix("10.96.0.7/32"))
	require.NoError(t, err)
	in := webInput()
	in.Resume = &vipapi.VIPState{
		Address: "10.96.0.7", State: vipapi.VIPStateActive, Announce: lbapi.AnnounceInternal,
		Placement: []vipapi.VIPPlacement{{Cluster: "c2", FailureDomain: "dc1/A", Nodes: []string{"a", "b"}}},
		Backends:  []vipapi.VIPBackend{{Backend: spec.Backends[0]}},
		Nodes: []vipapi.VIPNode{
			{Cluster: "c2", Node: "a", Spec: &spec, State: vipapi.NodeAnnounced, Digest: lbapi.Digest(spec)},
			{Cluster: "c2", Node: "b", Spec: &spec, State: vipapi.NodeAnnounced, Digest: lbapi.Digest(spec)},
		},
	}
	var resumed vipapi.VIPStatus
	var change *wftest.UpdateOutcome
	vt.at(time.Minute, func() {
		resumed = vt.status()
		change = vt.update(vipapi.UpdateBackends, vipapi.BackendsInput{Add: []lbapi.Backend{{Address: "10.0.1.20"}}})
	})
	var changed lbapi.VIPSpec
	vt.at(2*time.Minute, func() {
		changed, _ = vt.fleet.spec("c2/b", "web")
		vt.update(vipapi.UpdateRetire, vipapi.RetireInput{})
	})
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, in)
	final := vt.result()

	require.Equal(t, vipapi.VIPStateActive, resumed.State)
	require.Equal(t, "10.96.0.7", resumed.Address)
	require.Equal(t, lbapi.Digest(spec), resumed.Digest, "the carried state is the state the nodes run")
	require.NoError(t, change.Refused())
	require.Len(t, changed.Backends, 2, "the resumed run changes the nodes it carried")
	require.Equal(t, vipapi.VIPStateRetired, final.State)
	require.Empty(t, vt.heldBy("web"))
	_, err = vt.store.GetVIP(context.Background(), "web")
	require.ErrorIs(t, err, inventory.ErrNotFound)
}

func TestChoosePlacement(t *testing.T) {
	node := func(name string, up bool, vips, capacity int) vipapi.LBNodeState {
		return vipapi.LBNodeState{Node: name, Up: up, VIPs: vips, Capacity: capacity, Why: map[bool]string{false: "silent"}[up]}
	}
	cs := []vipapi.LBCluster{
		{Name: "z", FailureDomain: "d1", Nodes: []vipapi.LBNodeState{node("a", true, 5, 10), node("b", false, 0, 10)}},
		{Name: "y", FailureDomain: "d2", Nodes: []vipapi.LBNodeState{node("a", true, 1, 10)}},
		{Name: "x", FailureDomain: "d3", Nodes: []vipapi.LBNodeState{node("a", true, 1, 10)}},
		{Name: "dead", FailureDomain: "d4", Nodes: []vipapi.LBNodeState{node("a", false, 0, 10)}},
		{Name: "split", Problem: "its nodes disagree on the failure domain", Nodes: []vipapi.LBNodeState{node("a", true, 0, 10)}},
		{Name: "full", FailureDomain: "d5", Nodes: []vipapi.LBNodeState{node("a", true, 0, 0)}},
	}
	placed, notes, err := choosePlacement(cs, 3)
	require.NoError(t, err)
	require.Equal(t, []vipapi.VIPPlacement{
		{Cluster: "x", FailureDomain: "d3", Nodes: []string{"a"}}, // ties with y: by name
		{Cluster: "y", FailureDomain: "d2", Nodes: []string{"a"}},
		{Cluster: "z", FailureDomain: "d1", Nodes: []string{"a"}}, // only its up node
	}, placed)
	require.Len(t, notes, 1)
	require.Contains(t, notes[0], "b (silent)")

	_, _, err = choosePlacement(cs, 4)
	require.ErrorContains(t, err, "needs 4 clusters in different failure domains; eligible clusters cover 3")
	require.ErrorContains(t, err, "dead: no node up")
	require.ErrorContains(t, err, "split: its nodes disagree")
	require.ErrorContains(t, err, "full: its nodes report no capacity")
}

func TestValidateBackendsChange(t *testing.T) {
	current := []vipapi.VIPBackend{{Backend: lbapi.Backend{Address: "10.0.1.11", Weight: 100}}, {Backend: lbapi.Backend{Address: "10.0.1.12", Weight: 100}}}
	for name, c := range map[string]struct {
		in   vipapi.BackendsInput
		want string
	}{
		"nothing":          {vipapi.BackendsInput{By: "bob"}, "must add, remove or drain"},
		"unknown removal":  {vipapi.BackendsInput{Remove: []string{"10.0.1.99"}}, "not a backend of this VIP"},
		"bad address":      {vipapi.BackendsInput{Add: []lbapi.Backend{{Address: "10.0.1"}}}, "not a usable IP address"},
		"add and remove":   {vipapi.BackendsInput{Add: []lbapi.Backend{{Address: "10.0.1.11"}}, Remove: []string{"10.0.1.11"}}, "both added and removed"},
		"drain and remove": {vipapi.BackendsInput{Drain: []string{"10.0.1.11"}, Remove: []string{"10.0.1.11"}}, "both drained and removed"},
		"remove all":       {vipapi.BackendsInput{Remove: []string{"10.0.1.11", "10.0.1.12"}}, "without backends"},
		"heavy":            {vipapi.BackendsInput{Add: []lbapi.Backend{{Address: "10.0.1.13", Weight: 1_000_001}}}, "weight"},
		"bad serial":       {vipapi.BackendsInput{Servers: []string{"-x"}}, "serial"},
		"ok":               {vipapi.BackendsInput{Add: []lbapi.Backend{{Address: "10.0.1.13"}}, Drain: []string{"10.0.1.13"}, Remove: []string{"10.0.1.12"}}, ""},
		"ok servers only":  {vipapi.BackendsInput{Servers: []string{"SN-1"}, Remove: []string{"10.0.1.11", "10.0.1.12"}}, ""},
	} {
		err := vipapi.ValidateBackendsChange(c.in, current)
		if c.want == "" {
			require.NoError(t, err, name)
		} else {
			require.ErrorContains(t, err, c.want, name)
		}
	}
}

func TestVIPAnswersWhichNodesItWants(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	wants := func(cluster, node string) bool {
		v, err := vt.env.QueryWorkflow(lbapi.QueryWantsNode, lbapi.WantsNodeInput{Cluster: cluster, Node: node})
		require.NoError(t, err)
		var w bool
		require.NoError(t, v.Get(&w))
		return w
	}
	var running vipapi.VIPStatus
	var placed, unplaced, retired map[string]bool
	vt.at(time.Minute, func() {
		running = vt.status()
		placed, unplaced = map[string]bool{}, map[string]bool{}
		for _, c := range running.Placement {
			for _, n := range c.Nodes {
				placed[c.Cluster+"/"+n.Node] = wants(c.Cluster, n.Node)
			}
		}
		unplaced["c1/a"] = wants("c1", "a")
		unplaced["c2/nobody"] = wants("c2", "nobody")
	})
	vt.at(2*time.Minute, func() { vt.update(vipapi.UpdateRetire, vipapi.RetireInput{By: "alice", Reason: "done"}) })
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	final := vt.result()
	retired = map[string]bool{}
	for _, c := range running.Placement {
		for _, n := range c.Nodes {
			retired[c.Cluster+"/"+n.Node] = wants(c.Cluster, n.Node)
		}
	}

	require.Equal(t, vipapi.VIPStateActive, running.State)
	require.NotEmpty(t, placed)
	for n, w := range placed {
		assert.True(t, w, "a placed node %s is wanted", n)
	}
	assert.Equal(t, map[string]bool{"c1/a": false, "c2/nobody": false}, unplaced, "nodes outside the placement are not")
	require.Equal(t, vipapi.VIPStateRetired, final.State)
	for n, w := range retired {
		assert.False(t, w, "a retired VIP wants no node, %s included", n)
	}
}

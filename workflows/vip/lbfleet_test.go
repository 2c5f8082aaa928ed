package vip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	vipactivities "github.com/metalflow/metalflow/activities/vip"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/internal/wftest"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// fakeFleet stands in for the lbnode workers: one in-memory node per task
// queue that keeps the specs applied to it, computes digests with
// lbapi.Digest and records every call. It can be told to fail, to report
// a wrong digest, to have no BGP or to drop probes. (The real agent is
// tested against the real data plane in package lbnode/agent.)
type fakeFleet struct {
	mu    sync.Mutex
	nodes map[string]*fakeLBNode
	// calls is every call in order: "<cluster/node> <activity>".
	calls []string
	// applies is every ApplyVIP, in order.
	applies []fleetApply
}

type fleetApply struct {
	Node string
	Spec lbapi.VIPSpec
}

type fakeLBNode struct {
	vips map[string]lbapi.VIPSpec
	// down fails every call, as a node whose worker is gone.
	down bool
	// failApplies fails the next n applies.
	failApplies int
	// wrongDigest makes the node answer a digest it was not asked for.
	wrongDigest bool
	// noBGP: no peers, nothing announced.
	noBGP bool
	// dropProbes: the probe packet is not forwarded.
	dropProbes bool
	// routeStuck: BGP peers are up but no route gets into the RIB.
	routeStuck bool
	packets    uint64
	// traffic is what the node reports having balanced for each VIP.
	traffic lbapi.Counter
}

func newFakeFleet() *fakeFleet { return &fakeFleet{nodes: map[string]*fakeLBNode{}} }

func (f *fakeFleet) add(key string) *fakeLBNode {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := &fakeLBNode{vips: map[string]lbapi.VIPSpec{}}
	f.nodes[key] = n
	return n
}

// set changes a node's behaviour under the lock.
func (f *fakeFleet) set(key string, fn func(n *fakeLBNode)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f.nodes[key])
}

// spec is what a node runs for a VIP, and whether it runs it at all.
func (f *fakeFleet) spec(key, vip string) (lbapi.VIPSpec, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.nodes[key].vips[vip]
	return s, ok
}

func (f *fakeFleet) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeFleet) applyLog() []fleetApply {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.applies)
}

// node finds the node an activity runs on by its task queue, as the real
// workers are told apart.
func (f *fakeFleet) node(ctx context.Context, call string) (string, *fakeLBNode, error) {
	q := activity.GetInfo(ctx).TaskQueue
	key := strings.TrimPrefix(q, "lbnode/")
	n := f.nodes[key]
	if n == nil {
		return "", nil, fmt.Errorf("no node polls task queue %q", q)
	}
	f.calls = append(f.calls, key+" "+call)
	if n.down {
		return "", nil, errors.New("node unreachable")
	}
	return key, n, nil
}

func (f *fakeFleet) register(env *testsuite.TestWorkflowEnvironment) {
	reg := func(name string, fn any) { env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg(lbapi.ApplyVIPName, func(ctx context.Context, in lbapi.ApplyVIPInput) (lbapi.ApplyVIPResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		key, n, err := f.node(ctx, "apply")
		if err != nil {
			return lbapi.ApplyVIPResult{}, err
		}
		f.applies = append(f.applies, fleetApply{Node: key, Spec: in.Spec})
		if n.failApplies > 0 {
			n.failApplies--
			return lbapi.ApplyVIPResult{}, errors.New("map update failed")
		}
		if err := in.Spec.Validate(); err != nil {
			return lbapi.ApplyVIPResult{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidSpec", nil)
		}
		prev, had := n.vips[in.Spec.Name]
		n.vips[in.Spec.Name] = in.Spec
		res := lbapi.ApplyVIPResult{Node: key, Digest: n.digest(in.Spec), Changed: !had || lbapi.Digest(prev) != lbapi.Digest(in.Spec)}
		if !n.noBGP {
			res.Announced = in.Spec.Announce
		}
		return res, nil
	})
	reg(lbapi.RemoveVIPName, func(ctx context.Context, in lbapi.RemoveVIPInput) (lbapi.RemoveVIPResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		key, n, err := f.node(ctx, "remove")
		if err != nil {
			return lbapi.RemoveVIPResult{}, err
		}
		_, had := n.vips[in.Name]
		delete(n.vips, in.Name)
		return lbapi.RemoveVIPResult{Node: key, Removed: had}, nil
	})
	reg(lbapi.NodeReportName, func(ctx context.Context, in lbapi.NodeReportInput) (lbapi.NodeReport, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		key, n, err := f.node(ctx, "report")
		if err != nil {
			return lbapi.NodeReport{}, err
		}
		cluster, node, _ := strings.Cut(key, "/")
		rep := lbapi.NodeReport{Cluster: cluster, Node: node, Healthy: true, VIPs: []lbapi.VIPReport{}}
		if !n.noBGP {
			rep.Peers = []lbapi.PeerReport{{Address: "192.0.2.1", State: "established"}}
		}
		for name, s := range n.vips {
			if in.VIP != "" && in.VIP != name {
				continue
			}
			r := lbapi.VIPReport{Name: name, Address: s.Address, Digest: n.digest(s), Counter: n.traffic}
			if !n.noBGP && !n.routeStuck {
				r.Announced = s.Announce
			}
			rep.VIPs = append(rep.VIPs, r)
		}
		return rep, nil
	})
	reg(lbapi.ProbeVIPName, func(ctx context.Context, in lbapi.ProbeVIPInput) (lbapi.ProbeVIPResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		key, n, err := f.node(ctx, "probe")
		if err != nil {
			return lbapi.ProbeVIPResult{}, err
		}
		res := lbapi.ProbeVIPResult{Node: key, Verdict: "pass", PacketsBefore: n.packets, PacketsAfter: n.packets}
		s, ok := n.vips[in.VIP]
		if !ok || n.dropProbes {
			return res, nil
		}
		for _, b := range s.Backends {
			if b.Weight > 0 && b.State != lbapi.BackendDrain {
				n.packets++
				res.Verdict, res.Forwarded, res.Backend, res.PacketsAfter = "tx", true, b.Address, n.packets
				break
			}
		}
		return res, nil
	})
}

func (n *fakeLBNode) digest(s lbapi.VIPSpec) string {
	if n.wrongDigest {
		return "0000000000000000"
	}
	return lbapi.Digest(s)
}

// vipTest runs VIPRollout against the fake fleet and the real
// LoadBalancing activities on a real SQLite inventory.
type vipTest struct {
	t       *testing.T
	env     *testsuite.TestWorkflowEnvironment
	fleet   *fakeFleet
	store   *inventory.Store
	updates int
}

func newVIPTest(t *testing.T) *vipTest {
	t.Helper()
	store, err := inventory.Open(context.Background(), inventory.DialectSQLite, filepath.Join(t.TempDir(), "inventory.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(VIPRollout, workflow.RegisterOptions{Name: vipapi.VIPRolloutName})
	(&vipactivities.LoadBalancing{Inventory: store, Pools: vipapi.Pools{
		Internal: netip.MustParsePrefix("10.96.0.0/24"), Public: netip.MustParsePrefix("198.51.100.0/24"),
	}}).Register(env)
	fleet := newFakeFleet()
	fleet.register(env)
	return &vipTest{t: t, env: env, fleet: fleet, store: store}
}

// cluster adds a cluster of nodes a and b in a failure domain, running
// vips of capacity 100 each (so its load is vips/200).
func (vt *vipTest) cluster(name, domain string, vips int) {
	vt.t.Helper()
	for _, node := range []string{"a", "b"} {
		require.NoError(vt.t, vt.store.RecordLBNode(context.Background(), inventory.LBNode{
			Cluster: name, Node: node, FailureDomain: domain, Capacity: 100, VIPs: vips / 2, Healthy: true, LastSeen: time.Now(),
		}))
		vt.fleet.add(name + "/" + node)
	}
}

// standardClusters: c1 and c2 share a domain; c3 is elsewhere and more
// loaded than c1 but less than c2.
func (vt *vipTest) standardClusters() {
	vt.cluster("c1", "dc1/A", 20)
	vt.cluster("c2", "dc1/A", 10)
	vt.cluster("c3", "dc2/A", 60)
	vt.cluster("c4", "dc3/A", 100)
}

// server registers a racked server with a host address.
func (vt *vipTest) server(serial, rack, addr string) {
	vt.t.Helper()
	ctx := context.Background()
	require.NoError(vt.t, vt.store.EnsureSite(ctx, inventory.Site{Name: "dc1"}))
	require.NoError(vt.t, vt.store.CreateRack(ctx, inventory.Rack{Site: "dc1", Room: "A", Name: rack, HeightU: 42}))
	occ, err := vt.store.Occupancy(ctx, "dc1", rack)
	require.NoError(vt.t, err)
	require.NoError(vt.t, vt.store.PlaceAsset(ctx, serial, inventory.Placement{Site: "dc1", Room: "A", Rack: rack, Unit: len(occ) + 1, Face: "front"}, "test"))
	require.NoError(vt.t, vt.store.SetHostAddress(ctx, serial, netip.MustParseAddr(addr)))
}

func (vt *vipTest) at(d time.Duration, fn func()) { vt.env.RegisterDelayedCallback(fn, d) }

func (vt *vipTest) update(name string, arg any) *wftest.UpdateOutcome {
	o := &wftest.UpdateOutcome{}
	vt.updates++
	vt.env.UpdateWorkflow(name, fmt.Sprintf("%s-%d", name, vt.updates), o.Callbacks(), arg)
	return o
}

func (vt *vipTest) status() vipapi.VIPStatus {
	vt.t.Helper()
	v, err := vt.env.QueryWorkflow(stepapi.QueryStatus)
	require.NoError(vt.t, err)
	var st vipapi.VIPStatus
	require.NoError(vt.t, v.Get(&st))
	return st
}

func (vt *vipTest) result() vipapi.VIPStatus {
	vt.t.Helper()
	require.True(vt.t, vt.env.IsWorkflowCompleted())
	require.NoError(vt.t, vt.env.GetWorkflowError())
	var st vipapi.VIPStatus
	require.NoError(vt.t, vt.env.GetWorkflowResult(&st))
	return st
}

func (vt *vipTest) heldBy(vip string) []string {
	vt.fleet.mu.Lock()
	defer vt.fleet.mu.Unlock()
	var out []string
	for key, n := range vt.fleet.nodes {
		if _, ok := n.vips[vip]; ok {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

func webInput() vipapi.VIPRolloutInput {
	return vipapi.VIPRolloutInput{
		Name: "web", Protocol: "tcp", Ports: []uint16{443, 80},
		Backends: []lbapi.Backend{
			{Address: "10.0.1.11", Weight: 100}, {Address: "10.0.1.12", Weight: 100}, {Address: "10.0.1.13", Weight: 50},
		},
		RequestedBy: "alice",
	}
}

func placedClusters(st vipapi.VIPStatus) []string {
	var out []string
	for _, c := range st.Placement {
		out = append(out, c.Cluster)
	}
	return out
}

// requireEveryNode checks that every placed node runs the status's digest
// and is in state.
func requireEveryNode(t *testing.T, st vipapi.VIPStatus, state string) {
	t.Helper()
	require.NotEmpty(t, st.Placement)
	for _, c := range st.Placement {
		require.NotEmpty(t, c.Nodes)
		for _, n := range c.Nodes {
			require.Equal(t, state, n.State, "%s/%s", c.Cluster, n.Node)
			require.Equal(t, st.Digest, n.Digest, "%s/%s", c.Cluster, n.Node)
		}
	}
}

package agent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"golang.org/x/sys/unix"

	"github.com/metalflow/metalflow/internal/netlab"
	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

const testSeed = 11

// requireRoot skips tests that load XDP programs, mount a bpf filesystem
// or create network namespaces where that is impossible.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: loading XDP programs, BPF_PROG_TEST_RUN and network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs iproute2's ip command")
	}
}

// nodeLab is one LB node's interface: a veth pair inside a network
// namespace the test creates and deletes, and a private bpf filesystem for
// the pins. Nothing outside the namespace is touched.
type nodeLab struct {
	t       *testing.T
	lab     *netlab.Lab
	ns      string
	iface   string
	pinRoot string
	state   string
}

func newNodeLab(t *testing.T) *nodeLab {
	t.Helper()
	requireRoot(t)
	lab := netlab.New(t)
	l := &nodeLab{t: t, lab: lab, ns: lab.Namespace("node"), state: t.TempDir(), pinRoot: t.TempDir()}
	l.iface, _ = lab.Veth(l.ns, "n", l.ns, "r")
	require.NoError(t, lbnode.MountBPFFS(l.pinRoot))
	t.Cleanup(func() { _ = unix.Unmount(l.pinRoot, unix.MNT_DETACH) })
	return l
}

// open opens the node's data plane inside the namespace, or adopts the one
// a previous open left pinned.
func (l *nodeLab) open() *lbnode.Node {
	l.t.Helper()
	var n *lbnode.Node
	var err error
	l.lab.MustCall(l.ns, func() {
		n, err = lbnode.Open(lbnode.Config{
			Interface: l.iface, Mode: lbnode.AttachGeneric, PinRoot: l.pinRoot, Seed: testSeed,
			NextHopMAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99},
		})
	})
	if errors.Is(err, ebpf.ErrNotSupported) {
		l.t.Skipf("skipping: kernel lacks BPF support needed here: %v", err)
	}
	require.NoError(l.t, err)
	return n
}

// detachAtCleanup takes the data plane off the interface at the end of a test.
func (l *nodeLab) detachAtCleanup() {
	l.t.Cleanup(func() { _ = lbnode.DetachPinned(l.pinRoot, l.iface) })
}

func (l *nodeLab) linkPin() string { return filepath.Join(l.pinRoot, l.iface, "link") }

// routeCall is one call an Announcer got.
type routeCall struct {
	op     string // "announce" or "withdraw"
	prefix netip.Prefix
	scope  string
	// keysLeft is how many of the node's VIP keys on prefix's address
	// existed when the call came: a withdrawal before removal sees them all.
	keysLeft int
}

// recordingAnnouncer stands in for the BGP speaker (its own package, tested
// there): it keeps the routes in a map and records every call.
type recordingAnnouncer struct {
	node *lbnode.Node

	mu     sync.Mutex
	routes map[netip.Prefix]string
	calls  []routeCall
}

func newRecordingAnnouncer(node *lbnode.Node) *recordingAnnouncer {
	return &recordingAnnouncer{node: node, routes: map[netip.Prefix]string{}}
}

func (r *recordingAnnouncer) keysOn(a netip.Addr) int {
	c := 0
	for _, v := range r.node.VIPs() {
		if v.Addr == a {
			c++
		}
	}
	return c
}

func (r *recordingAnnouncer) Announce(_ context.Context, p netip.Prefix, scope string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes[p] = scope
	r.calls = append(r.calls, routeCall{op: "announce", prefix: p, scope: scope, keysLeft: r.keysOn(p.Addr())})
	return nil
}

func (r *recordingAnnouncer) Withdraw(_ context.Context, p netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.routes, p)
	r.calls = append(r.calls, routeCall{op: "withdraw", prefix: p, keysLeft: r.keysOn(p.Addr())})
	return nil
}

func (r *recordingAnnouncer) Announced() map[netip.Prefix]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[netip.Prefix]string, len(r.routes))
	for p, s := range r.routes {
		out[p] = s
	}
	return out
}

func (r *recordingAnnouncer) Peers(context.Context) ([]lbapi.PeerReport, error) {
	return []lbapi.PeerReport{{Address: "10.9.0.1", State: "established"}}, nil
}

func (r *recordingAnnouncer) history() []routeCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// recordingReporter collects health reports; in production they are
// Temporal signals.
type recordingReporter struct {
	mu      sync.Mutex
	changes []lbapi.BackendHealthChange
}

func (r *recordingReporter) ReportBackendHealth(_ context.Context, c lbapi.BackendHealthChange) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
	return nil
}

func (r *recordingReporter) list() []lbapi.BackendHealthChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}

// activities runs the agent's activities the way a worker does: registered
// under their lbapi names, payloads through the data converter.
type activities struct {
	t   *testing.T
	env *testsuite.TestActivityEnvironment
}

func newActivities(t *testing.T, a *Agent) *activities {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	a.Register(env)
	return &activities{t: t, env: env}
}

func (x *activities) apply(spec lbapi.VIPSpec) (lbapi.ApplyVIPResult, error) {
	var res lbapi.ApplyVIPResult
	v, err := x.env.ExecuteActivity(lbapi.ApplyVIPName, lbapi.ApplyVIPInput{Spec: spec})
	if err == nil {
		require.NoError(x.t, v.Get(&res))
	}
	return res, err
}

func (x *activities) mustApply(spec lbapi.VIPSpec) lbapi.ApplyVIPResult {
	x.t.Helper()
	res, err := x.apply(spec)
	require.NoError(x.t, err)
	return res
}

func (x *activities) remove(name string) lbapi.RemoveVIPResult {
	x.t.Helper()
	v, err := x.env.ExecuteActivity(lbapi.RemoveVIPName, lbapi.RemoveVIPInput{Name: name})
	require.NoError(x.t, err)
	var res lbapi.RemoveVIPResult
	require.NoError(x.t, v.Get(&res))
	return res
}

func (x *activities) report(vip string) lbapi.NodeReport {
	x.t.Helper()
	v, err := x.env.ExecuteActivity(lbapi.NodeReportName, lbapi.NodeReportInput{VIP: vip})
	require.NoError(x.t, err)
	var res lbapi.NodeReport
	require.NoError(x.t, v.Get(&res))
	return res
}

func (x *activities) probeVIP(in lbapi.ProbeVIPInput) (lbapi.ProbeVIPResult, error) {
	var res lbapi.ProbeVIPResult
	v, err := x.env.ExecuteActivity(lbapi.ProbeVIPName, in)
	if err == nil {
		require.NoError(x.t, v.Get(&res))
	}
	return res, err
}

func (x *activities) probeBackend(in lbapi.ProbeBackendInput) (lbapi.ProbeBackendResult, error) {
	var res lbapi.ProbeBackendResult
	v, err := x.env.ExecuteActivity(lbapi.ProbeBackendName, in)
	if err == nil {
		require.NoError(x.t, v.Get(&res))
	}
	return res, err
}

// requireNonRetryable asserts err is an application error a workflow must
// not retry.
func requireNonRetryable(t *testing.T, err error, contains string) {
	t.Helper()
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr, "want an application error, got %T: %v", err, err)
	require.True(t, appErr.NonRetryable(), "error must be non-retryable: %v", err)
	require.Contains(t, err.Error(), contains)
}

// eventually polls cond with a generous deadline: tests wait for behaviour,
// they never assert how fast it comes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startAgent opens an agent on node with test-friendly intervals.
func startAgent(t *testing.T, l *nodeLab, node *lbnode.Node, ann Announcer, rep Reporter) *Agent {
	t.Helper()
	a, err := New(context.Background(), Config{
		Node: node, Cluster: "c1", NodeName: "lb1", FailureDomain: "rack-a", Capacity: 8,
		StateDir: l.state, Announcer: ann, Reporter: rep, DataPlaneInterval: 20 * time.Millisecond,
		MainTaskQueue: "metalflow",
	})
	require.NoError(t, err)
	return a
}

package agent

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

func TestUnhealthyDataPlaneWithdrawsEveryRoute(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	t.Cleanup(func() { _ = node.Close() })
	ann := newRecordingAnnouncer(node)
	rep := &recordingReporter{}
	a := startAgent(t, l, node, ann, rep)
	t.Cleanup(a.Close)
	x := newActivities(t, a)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	acceptAll(ln)
	port := portOf(t, ln.Addr())
	spec := lbapi.VIPSpec{Name: "web", Address: "10.200.0.50", Protocol: "tcp", Ports: []uint16{port},
		Backends:    []lbapi.Backend{{Address: "127.0.0.1", Weight: 1}, {Address: "127.0.0.2", Weight: 1}},
		Announce:    lbapi.AnnouncePublic,
		HealthCheck: &lbapi.HealthCheck{Kind: "tcp", IntervalMS: 5, TimeoutMS: 500, Fall: 2, Rise: 1},
	}
	res := x.mustApply(spec)
	assert.Equal(t, lbapi.AnnouncePublic, res.Announced)

	t.Run("health checks of applied backends reach the report and the reporter", func(t *testing.T) {
		eventually(t, "both backends are judged", func() bool { return len(rep.list()) == 2 })
		got := map[string]bool{}
		for _, c := range rep.list() {
			got[c.Backend] = c.Healthy
			assert.Equal(t, "web", c.VIP)
		}
		// Nothing listens on 127.0.0.2 at that port.
		assert.Equal(t, map[string]bool{"127.0.0.1": true, "127.0.0.2": false}, got)
		r := x.report("web").VIPs[0]
		health := map[string]string{}
		for _, b := range r.Backends {
			health[b.Address] = b.Health
		}
		assert.Equal(t, map[string]string{"127.0.0.1": "up", "127.0.0.2": "down"}, health)
		hb := a.Heartbeat(false)
		assert.Equal(t, lbapi.NodeHeartbeat{Cluster: "c1", Node: "lb1", FailureDomain: "rack-a", Capacity: 8,
			VIPs: 1, Healthy: true, At: hb.At}, hb)
	})

	t.Run("a detached program takes every route down", func(t *testing.T) {
		// Another process detaching the link is what an operator's
		// `bpftool link detach` or a vanished interface looks like.
		l2, err := link.LoadPinnedLink(l.linkPin(), nil)
		require.NoError(t, err)
		require.NoError(t, l2.Detach())
		l2.Close()

		eventually(t, "the route is withdrawn", func() bool { return len(ann.Announced()) == 0 })
		assert.False(t, a.Healthy())
		assert.False(t, x.report("").Healthy)
		assert.False(t, a.Heartbeat(false).Healthy)

		// An apply while unhealthy programs the maps but announces nothing.
		spec.Announce = lbapi.AnnounceInternal
		res := x.mustApply(spec)
		assert.Equal(t, lbapi.AnnounceNone, res.Announced)
		assert.Empty(t, ann.Announced())
		last := ann.history()[len(ann.history())-1]
		assert.Equal(t, routeCall{op: "withdraw", prefix: netip.MustParsePrefix("10.200.0.50/32"), keysLeft: 1}, last)
	})

	t.Run("a data plane healthy again announces again", func(t *testing.T) {
		// A detached link cannot be brought back, so the watch is stopped
		// and the agent is told of a recovery the way the watch would.
		a.Close()
		a.followDataPlane(nil)
		assert.True(t, a.Healthy())
		assert.Equal(t, map[netip.Prefix]string{netip.MustParsePrefix("10.200.0.50/32"): lbapi.AnnounceInternal}, ann.Announced())
	})
}

func TestShutdownWithdrawsAndStaysQuiet(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	t.Cleanup(func() { _ = node.Close() })
	ann := newRecordingAnnouncer(node)
	a := startAgent(t, l, node, ann, nil)
	t.Cleanup(a.Close)
	x := newActivities(t, a)
	spec := lbapi.VIPSpec{Name: "web", Address: "10.200.0.60", Protocol: "tcp", Ports: []uint16{80},
		Backends: []lbapi.Backend{{Address: "10.1.0.1", Weight: 1}}, Announce: lbapi.AnnounceInternal}
	x.mustApply(spec)
	require.Len(t, ann.Announced(), 1)

	require.NoError(t, a.Shutdown(t.Context()))
	assert.Empty(t, ann.Announced())
	// An activity still running as the worker stops must not bring the
	// route back, nor may the data-plane watch.
	spec.Announce = lbapi.AnnouncePublic
	res := x.mustApply(spec)
	assert.Empty(t, res.Announced)
	a.refreshDataPlane()
	assert.Empty(t, ann.Announced())
	assert.True(t, a.Heartbeat(true).Stopping)
	assert.Len(t, node.VIPs(), 1, "the data plane keeps forwarding what is still routed to it")
}

func TestDriftedVIPReportsNoDigestAndIsNotAnnounced(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	t.Cleanup(func() { _ = node.Close() })
	ann := newRecordingAnnouncer(node)
	a := startAgent(t, l, node, ann, nil)
	t.Cleanup(a.Close)
	x := newActivities(t, a)
	spec := lbapi.VIPSpec{Name: "web", Address: "10.200.0.80", Protocol: "tcp", Ports: []uint16{80, 81},
		Backends: []lbapi.Backend{{Address: "10.1.0.1", Weight: 1}}, Announce: lbapi.AnnounceInternal}
	x.mustApply(spec)
	require.Len(t, ann.Announced(), 1)

	// Someone else (the standalone mode, an operator) removes a key.
	require.NoError(t, node.RemoveVIP(key("10.200.0.80", 81)))
	assert.Empty(t, x.report("web").VIPs[0].Digest, "the digest is checked against the maps")
	eventually(t, "the route of a VIP no longer served is withdrawn", func() bool { return len(ann.Announced()) == 0 })

	res := x.mustApply(spec)
	assert.True(t, res.Changed, "the apply repaired the data plane")
	assert.Equal(t, lbapi.Digest(spec), x.report("web").VIPs[0].Digest)
	assert.Equal(t, lbapi.AnnounceInternal, res.Announced)
}

// A node whose data plane is already dead when the agent starts reports
// itself unhealthy, so placement passes it by; the data-plane watch speaks
// only of changes, so the start must say why.
func TestAgentStartedOnADeadDataPlaneSaysWhy(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	t.Cleanup(func() { _ = node.Close() })
	pinned, err := link.LoadPinnedLink(l.linkPin(), nil)
	require.NoError(t, err)
	require.NoError(t, pinned.Detach())
	pinned.Close()

	var logs bytes.Buffer
	a, err := New(context.Background(), Config{
		Node: node, Cluster: "c1", NodeName: "lb1", StateDir: l.state, MainTaskQueue: "metalflow",
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	assert.False(t, a.Healthy())
	assert.Contains(t, logs.String(), `msg="data plane unhealthy at start`)
	assert.Contains(t, logs.String(), "no longer attached to its interface")
}

package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

func webSpec() lbapi.VIPSpec {
	return lbapi.VIPSpec{
		Name: "web", Address: "10.200.0.10", Protocol: "tcp", Ports: []uint16{80, 443},
		Backends: []lbapi.Backend{
			{Address: "10.1.0.2", Weight: 100},
			{Address: "10.1.0.1", Weight: 100, Serial: "SRV-1"},
			{Address: "10.1.0.3", Weight: 200, State: lbapi.BackendDrain},
		},
		Announce: lbapi.AnnounceInternal,
	}
}

func key(addr string, port uint16) lbnode.VIPKey {
	return lbnode.VIPKey{Addr: netip.MustParseAddr(addr), Port: port, Protocol: lbnode.ProtocolTCP}
}

func backends(t *testing.T, n *lbnode.Node, k lbnode.VIPKey) []lbnode.Backend {
	t.Helper()
	bs, err := n.Backends(k)
	require.NoError(t, err)
	return bs
}

func keysOf(n *lbnode.Node) []lbnode.VIPKey {
	var out []lbnode.VIPKey
	for _, v := range n.VIPs() {
		out = append(out, v.VIPKey)
	}
	return out
}

func TestApplyRemoveAndRestart(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	ann := newRecordingAnnouncer(node)
	a := startAgent(t, l, node, ann, nil)
	x := newActivities(t, a)
	prefix := netip.MustParsePrefix("10.200.0.10/32")

	spec := webSpec()
	var digest string
	t.Run("apply programs every port with the backends and announces", func(t *testing.T) {
		res := x.mustApply(spec)
		assert.True(t, res.Changed)
		assert.Equal(t, "lb1", res.Node)
		assert.Equal(t, lbapi.Digest(spec), res.Digest)
		assert.Equal(t, lbapi.AnnounceInternal, res.Announced)
		digest = res.Digest
		want := []lbnode.Backend{
			{Addr: netip.MustParseAddr("10.1.0.1"), Weight: 100, State: lbnode.BackendActive},
			{Addr: netip.MustParseAddr("10.1.0.2"), Weight: 100, State: lbnode.BackendActive},
			{Addr: netip.MustParseAddr("10.1.0.3"), Weight: 200, State: lbnode.BackendDrain},
		}
		assert.Equal(t, []lbnode.VIPKey{key("10.200.0.10", 80), key("10.200.0.10", 443)}, keysOf(node))
		assert.Equal(t, want, backends(t, node, key("10.200.0.10", 80)))
		assert.Equal(t, want, backends(t, node, key("10.200.0.10", 443)))
		assert.Equal(t, map[netip.Prefix]string{prefix: lbapi.AnnounceInternal}, ann.Announced())
	})

	t.Run("the same spec again changes nothing", func(t *testing.T) {
		statePath := filepath.Join(l.state, stateFileName)
		before, err := os.Stat(statePath)
		require.NoError(t, err)
		calls := len(ann.history())
		// Listed in another order: the same VIP.
		again := webSpec()
		again.Ports = []uint16{443, 80}
		again.Backends[0], again.Backends[2] = again.Backends[2], again.Backends[0]
		res := x.mustApply(again)
		assert.False(t, res.Changed)
		assert.Equal(t, digest, res.Digest)
		after, err := os.Stat(statePath)
		require.NoError(t, err)
		// Every save renames a new file into place.
		assert.True(t, os.SameFile(before, after), "the state file was rewritten")
		assert.Len(t, ann.history(), calls, "the route was announced again")
	})

	t.Run("changed backends are programmed", func(t *testing.T) {
		spec.Backends = []lbapi.Backend{{Address: "10.1.0.1", Weight: 100}, {Address: "10.1.0.4", Weight: 50}}
		res := x.mustApply(spec)
		assert.True(t, res.Changed)
		assert.Equal(t, lbapi.Digest(spec), res.Digest)
		assert.NotEqual(t, digest, res.Digest)
		digest = res.Digest
		want := []lbnode.Backend{
			{Addr: netip.MustParseAddr("10.1.0.1"), Weight: 100, State: lbnode.BackendActive},
			{Addr: netip.MustParseAddr("10.1.0.4"), Weight: 50, State: lbnode.BackendActive},
		}
		assert.Equal(t, want, backends(t, node, key("10.200.0.10", 80)))
		assert.Equal(t, want, backends(t, node, key("10.200.0.10", 443)))
	})

	t.Run("a port dropped from the spec is removed", func(t *testing.T) {
		spec.Ports = []uint16{443}
		res := x.mustApply(spec)
		assert.True(t, res.Changed)
		assert.Equal(t, lbapi.Digest(spec), res.Digest)
		digest = res.Digest
		assert.Equal(t, []lbnode.VIPKey{key("10.200.0.10", 443)}, keysOf(node))
	})

	t.Run("an invalid spec is refused and changes nothing", func(t *testing.T) {
		statePath := filepath.Join(l.state, stateFileName)
		stateBefore, err := os.ReadFile(statePath)
		require.NoError(t, err)
		keysBefore := keysOf(node)
		backendsBefore := backends(t, node, key("10.200.0.10", 443))
		for _, tc := range []struct {
			name   string
			change func(*lbapi.VIPSpec)
			want   string
		}{
			{"protocol", func(s *lbapi.VIPSpec) { s.Protocol = "sctp" }, "want tcp or udp"},
			{"backend", func(s *lbapi.VIPSpec) { s.Backends = append(s.Backends, lbapi.Backend{Address: "nope"}) }, "backend address"},
			{"weight", func(s *lbapi.VIPSpec) { s.Backends[0].Weight = 5_000_000 }, "weight"},
			{"port twice", func(s *lbapi.VIPSpec) { s.Ports = []uint16{443, 8443, 8443} }, "listed twice"},
			{"announce", func(s *lbapi.VIPSpec) { s.Announce = "everyone" }, "announce"},
			{"another VIP's key", func(s *lbapi.VIPSpec) { s.Name = "web-copy" }, "already VIP web's"},
		} {
			bad := spec
			bad.Backends = append([]lbapi.Backend(nil), spec.Backends...)
			tc.change(&bad)
			_, err := x.apply(bad)
			requireNonRetryable(t, err, tc.want)
		}
		assert.Equal(t, keysBefore, keysOf(node))
		assert.Equal(t, backendsBefore, backends(t, node, key("10.200.0.10", 443)))
		stateAfter, err := os.ReadFile(statePath)
		require.NoError(t, err)
		assert.Equal(t, string(stateBefore), string(stateAfter))
	})

	t.Run("announce none withdraws, public announces to all", func(t *testing.T) {
		spec.Announce = lbapi.AnnounceNone
		res := x.mustApply(spec)
		assert.True(t, res.Changed, "the announcement is part of the spec")
		assert.Equal(t, lbapi.AnnounceNone, res.Announced)
		assert.Empty(t, ann.Announced())
		spec.Announce = lbapi.AnnouncePublic
		res = x.mustApply(spec)
		assert.Equal(t, lbapi.AnnouncePublic, res.Announced)
		assert.Equal(t, map[netip.Prefix]string{prefix: lbapi.AnnouncePublic}, ann.Announced())
		digest = res.Digest
	})

	t.Run("the report has the digest, the route and the peers", func(t *testing.T) {
		rep := x.report("")
		assert.True(t, rep.Healthy)
		assert.Equal(t, "c1", rep.Cluster)
		assert.Equal(t, "rack-a", rep.FailureDomain)
		require.Len(t, rep.VIPs, 1)
		assert.Equal(t, digest, rep.VIPs[0].Digest)
		assert.Equal(t, lbapi.AnnouncePublic, rep.VIPs[0].Announced)
		assert.Len(t, rep.VIPs[0].Backends, 2)
		assert.Equal(t, "unknown", rep.VIPs[0].Backends[0].Health, "no health check configured")
		assert.Len(t, rep.Peers, 1)
		assert.Empty(t, x.report("other").VIPs)
	})

	t.Run("restart: the new agent takes up the same state without reprogramming", func(t *testing.T) {
		a.Close()
		require.NoError(t, node.Close())
		node = l.open()
		require.True(t, node.Adopted())
		ann2 := newRecordingAnnouncer(node)
		a2 := startAgent(t, l, node, ann2, nil)
		t.Cleanup(a2.Close)
		x2 := newActivities(t, a2)
		assert.Equal(t, map[netip.Prefix]string{prefix: lbapi.AnnouncePublic}, ann2.Announced(),
			"a restarted agent announces what it announced before")
		rep := x2.report("web")
		require.Len(t, rep.VIPs, 1)
		assert.Equal(t, digest, rep.VIPs[0].Digest)
		res := x2.mustApply(spec)
		assert.False(t, res.Changed)
		assert.Equal(t, digest, res.Digest)
		x, ann = x2, ann2
	})

	t.Run("remove withdraws first, then deletes the keys", func(t *testing.T) {
		calls := len(ann.history())
		res := x.remove("web")
		assert.True(t, res.Removed)
		hist := ann.history()[calls:]
		require.Len(t, hist, 1)
		assert.Equal(t, "withdraw", hist[0].op)
		assert.Equal(t, prefix, hist[0].prefix)
		assert.Equal(t, 1, hist[0].keysLeft, "the route must go before the VIP's keys")
		assert.Empty(t, node.VIPs())
		assert.Empty(t, ann.Announced())
		assert.Empty(t, x.report("").VIPs)

		again := x.remove("web")
		assert.False(t, again.Removed)
	})
}

func TestVIPsSharingAnAddressShareTheRoute(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	t.Cleanup(func() { _ = node.Close() })
	ann := newRecordingAnnouncer(node)
	a := startAgent(t, l, node, ann, nil)
	t.Cleanup(a.Close)
	x := newActivities(t, a)
	prefix := netip.MustParsePrefix("10.200.0.20/32")

	web := lbapi.VIPSpec{Name: "web", Address: "10.200.0.20", Protocol: "tcp", Ports: []uint16{80},
		Backends: []lbapi.Backend{{Address: "10.1.0.1", Weight: 1}}, Announce: lbapi.AnnounceInternal}
	dns := lbapi.VIPSpec{Name: "dns", Address: "10.200.0.20", Protocol: "udp", Ports: []uint16{53},
		Backends: []lbapi.Backend{{Address: "10.1.0.1", Weight: 1}}, Announce: lbapi.AnnouncePublic}
	x.mustApply(web)
	x.mustApply(dns)
	assert.Equal(t, map[netip.Prefix]string{prefix: lbapi.AnnouncePublic}, ann.Announced(), "the widest scope wins")
	x.remove("dns")
	assert.Equal(t, map[netip.Prefix]string{prefix: lbapi.AnnounceInternal}, ann.Announced(),
		"removing one VIP keeps the other's route")
	assert.Equal(t, []lbnode.VIPKey{key("10.200.0.20", 80)}, keysOf(node))
}

func TestCapacityAndStateErrors(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	t.Cleanup(func() { _ = node.Close() })
	a, err := New(t.Context(), Config{Node: node, Cluster: "c1", NodeName: "lb1", Capacity: 1, StateDir: l.state})
	require.NoError(t, err)
	x := newActivities(t, a)
	x.mustApply(lbapi.VIPSpec{Name: "one", Address: "10.200.0.31", Protocol: "tcp", Ports: []uint16{80}})
	_, err = x.apply(lbapi.VIPSpec{Name: "two", Address: "10.200.0.32", Protocol: "tcp", Ports: []uint16{80}})
	requireNonRetryable(t, err, "capacity")
	assert.Len(t, node.VIPs(), 1)
	a.Close()

	require.NoError(t, os.WriteFile(filepath.Join(l.state, stateFileName), []byte("{not json"), 0o600))
	_, err = New(t.Context(), Config{Node: node, Cluster: "c1", NodeName: "lb1", StateDir: l.state})
	require.ErrorContains(t, err, "agent state")
}

func TestMovedVIPIsWithdrawnBeforeItsOldKeysGo(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	t.Cleanup(func() { _ = node.Close() })
	ann := newRecordingAnnouncer(node)
	a := startAgent(t, l, node, ann, nil)
	t.Cleanup(a.Close)
	x := newActivities(t, a)

	spec := lbapi.VIPSpec{Name: "web", Address: "10.200.0.70", Protocol: "tcp", Ports: []uint16{80},
		Backends: []lbapi.Backend{{Address: "10.1.0.1", Weight: 1}}, Announce: lbapi.AnnounceInternal}
	x.mustApply(spec)
	calls := len(ann.history())
	spec.Address = "10.200.0.71"
	res := x.mustApply(spec)
	assert.True(t, res.Changed)
	assert.Equal(t, lbapi.AnnounceInternal, res.Announced)
	hist := ann.history()[calls:]
	require.Len(t, hist, 2)
	assert.Equal(t, routeCall{op: "withdraw", prefix: netip.MustParsePrefix("10.200.0.70/32"), keysLeft: 1}, hist[0],
		"the old address is withdrawn while it is still served")
	assert.Equal(t, routeCall{op: "announce", prefix: netip.MustParsePrefix("10.200.0.71/32"), scope: lbapi.AnnounceInternal, keysLeft: 1}, hist[1])
	assert.Equal(t, []lbnode.VIPKey{key("10.200.0.71", 80)}, keysOf(node))
}

func TestRebootedNodeIsProgrammedFromItsState(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	a := startAgent(t, l, node, nil, nil)
	x := newActivities(t, a)
	spec := webSpec()
	x.mustApply(spec)
	a.Close()
	// A reboot loses the pins and the maps; the state directory stays.
	require.NoError(t, node.Detach())

	node = l.open()
	t.Cleanup(func() { _ = node.Close() })
	require.False(t, node.Adopted())
	require.Empty(t, node.VIPs())
	ann := newRecordingAnnouncer(node)
	a = startAgent(t, l, node, ann, nil)
	t.Cleanup(a.Close)
	x = newActivities(t, a)
	assert.Equal(t, []lbnode.VIPKey{key("10.200.0.10", 80), key("10.200.0.10", 443)}, keysOf(node))
	assert.Equal(t, lbapi.Digest(spec), x.report("web").VIPs[0].Digest)
	assert.Equal(t, map[netip.Prefix]string{netip.MustParsePrefix("10.200.0.10/32"): lbapi.AnnounceInternal}, ann.Announced())
	assert.False(t, x.mustApply(spec).Changed)
}

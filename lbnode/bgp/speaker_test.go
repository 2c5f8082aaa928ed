package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

const (
	nodeASN     = 65000
	internalASN = 65001
	externalASN = 65002
	// How long the tests wait for BGP to converge before they give up; it
	// bounds a hung test, nothing asserts it.
	converge = 20 * time.Second
)

// VIPs come from the documentation ranges: they exist only in bird's RIB,
// which has no kernel protocol, so nothing is ever routed to them.
func testVIPs() (vip4, vip4b, vip6 netip.Prefix) {
	return netip.MustParsePrefix("198.51.100.10/32"), netip.MustParsePrefix("198.51.100.20/32"), netip.MustParsePrefix("2001:db8::10/128")
}

// birdOwnRoute is the route the internal ToR sends the node.
func birdOwnRoute() netip.Prefix { return netip.MustParsePrefix("203.0.113.0/24") }

// rack is a lab with two ToRs on the node's segment: an internal one
// (IPv4 session, which also sends the node a route of its own) and an
// external one (IPv6 session, non-standard port), and the speaker peering
// with both.
type rack struct {
	lab      *lab
	internal *birdPeer
	external *birdPeer
	speaker  *Speaker
}

func newRack(t *testing.T) *rack {
	t.Helper()
	l := newLab(t)
	r := &rack{
		lab:      l,
		internal: l.startBird(nodeASN, birdOptions{n: 2, asn: internalASN, port: 179, exportStatic: birdOwnRoute()}),
		external: l.startBird(nodeASN, birdOptions{n: 3, asn: externalASN, port: 1790, v6Session: true}),
	}
	s, err := New(Config{
		ASN:          nodeASN,
		RouterID:     l.link.Root4,
		ListenPort:   -1,
		NextHopV4:    l.link.Root4,
		NextHopV6:    l.link.Root6,
		HoldTime:     9 * time.Second,
		ConnectRetry: time.Second,
		Peers: []Peer{
			{Address: r.internal.Addr, ASN: internalASN},
			{Address: r.external.Addr, ASN: externalASN, Port: r.external.Port, External: true},
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	require.NoError(t, err)
	r.speaker = s
	ctx := context.Background()
	require.NoError(t, s.Start(ctx))
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	began := time.Now()
	waitFor(t, converge, func() (bool, string) {
		in, ex := r.internal.State(), r.external.State()
		return in == "Established" && ex == "Established", "internal " + in + ", external " + ex
	})
	t.Logf("both sessions established %s after Start", time.Since(began))
	return r
}

// hasRoute waits until bird has prefix from the node, via the node's
// address of the prefix's family.
func (r *rack) hasRoute(t *testing.T, b *birdPeer, prefix netip.Prefix) birdRoute {
	t.Helper()
	want := r.lab.link.Root4.String()
	if prefix.Addr().Is6() {
		want = r.lab.link.Root6.String()
	}
	var got birdRoute
	waitFor(t, converge, func() (bool, string) {
		route, ok := b.Routes()[prefix]
		got = route
		return ok && route.Via == want, "bird at " + b.Addr.String() + " has " + prefix.String() + ": " + route.Via
	})
	require.Contains(t, got.Attributes, "BGP.as_path: 65000")
	// The internal-only tag is the node's business; no peer sees it.
	require.NotContains(t, got.Attributes, "large_community")
	return got
}

// lacksRoute waits until bird does not have prefix.
func lacksRoute(t *testing.T, b *birdPeer, prefix netip.Prefix) {
	t.Helper()
	waitFor(t, converge, func() (bool, string) {
		_, ok := b.Routes()[prefix]
		return !ok, "bird at " + b.Addr.String() + " still has " + prefix.String()
	})
}

// Absence is only meaningful once what was sent after it has arrived: the
// barrier prefix is announced last and waited for, and as the session is
// one ordered stream, whatever came before it has been processed too.
func (r *rack) barrier(t *testing.T, b *birdPeer, scope string) {
	t.Helper()
	barrier := netip.MustParsePrefix("198.51.100.250/32")
	ctx := context.Background()
	require.NoError(t, r.speaker.Announce(ctx, barrier, scope))
	r.hasRoute(t, b, barrier)
	require.NoError(t, r.speaker.Withdraw(ctx, barrier))
	lacksRoute(t, b, barrier)
}

func TestAnnounceScopesReachTheRightPeers(t *testing.T) {
	r := newRack(t)
	s, ctx := r.speaker, context.Background()
	vip4, vip4b, vip6 := testVIPs()

	peers, err := s.Peers(ctx)
	require.NoError(t, err)
	require.Equal(t, []lbapi.PeerReport{
		{Address: r.internal.Addr.String(), External: false, State: "established"},
		{Address: r.external.Addr.String(), External: true, State: "established"},
	}, peers)

	// Public VIPs of both families reach both peers, with the node's
	// address of that family as next hop.
	require.NoError(t, s.Announce(ctx, vip4, lbapi.AnnouncePublic))
	require.NoError(t, s.Announce(ctx, vip6, lbapi.AnnouncePublic))
	for _, b := range []*birdPeer{r.internal, r.external} {
		r.hasRoute(t, b, vip4)
		r.hasRoute(t, b, vip6)
	}

	// An internal VIP reaches only the internal peer.
	require.NoError(t, s.Announce(ctx, vip4b, lbapi.AnnounceInternal))
	r.hasRoute(t, r.internal, vip4b)
	r.barrier(t, r.external, lbapi.AnnouncePublic)
	require.NotContains(t, r.external.Routes(), vip4b)

	require.Equal(t, map[netip.Prefix]string{
		vip4:  lbapi.AnnouncePublic,
		vip6:  lbapi.AnnouncePublic,
		vip4b: lbapi.AnnounceInternal,
	}, s.Announced(), "the route bird sends the node stays out of its RIB")
	require.Contains(t, r.internal.Routes(), birdOwnRoute(), "bird does send its own route")
	require.Equal(t, uint64(1), r.internal.Exported("ipv4"), "bird did send its route to the node")
	var rib []string
	require.NoError(t, s.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyV4()}, func(d *api.Destination) {
		rib = append(rib, d.GetPrefix())
	}))
	require.ElementsMatch(t, []string{vip4.String(), vip4b.String()}, rib, "the import policy keeps learned routes out of the RIB")

	require.NoError(t, testutil.CollectAndCompare(NewCollector(s), strings.NewReader(`
# HELP metalflow_lb_bgp_announced_routes VIP routes the node announces, by scope (internal: internal peers only; public: every peer).
# TYPE metalflow_lb_bgp_announced_routes gauge
metalflow_lb_bgp_announced_routes{scope="internal"} 1
metalflow_lb_bgp_announced_routes{scope="public"} 2
# HELP metalflow_lb_bgp_session_up 1 if the BGP session to the peer is established, else 0.
# TYPE metalflow_lb_bgp_session_up gauge
metalflow_lb_bgp_session_up{external="false",peer="`+r.internal.Addr.String()+`"} 1
metalflow_lb_bgp_session_up{external="true",peer="`+r.external.Addr.String()+`"} 1
`)))

	// Approval: the internal VIP goes public and reaches the external peer
	// too.
	internalBefore := r.internal.Imported("ipv4")
	require.NoError(t, s.Announce(ctx, vip4b, lbapi.AnnouncePublic))
	r.hasRoute(t, r.external, vip4b)
	r.hasRoute(t, r.internal, vip4b)
	require.Equal(t, lbapi.AnnouncePublic, s.Announced()[vip4b])

	// Back to internal: withdrawn from the external peer only.
	require.NoError(t, s.Announce(ctx, vip4b, lbapi.AnnounceInternal))
	lacksRoute(t, r.external, vip4b)
	r.barrier(t, r.internal, lbapi.AnnounceInternal)
	r.hasRoute(t, r.internal, vip4b)
	require.Equal(t, lbapi.AnnounceInternal, s.Announced()[vip4b])
	// The internal peer saw the route replaced, never withdrawn: an update
	// per re-scope and one for the barrier, and only the barrier's
	// withdrawal.
	internalAfter := r.internal.Imported("ipv4")
	require.Equal(t, internalBefore.Updates+3, internalAfter.Updates)
	require.Equal(t, internalBefore.Withdraws+1, internalAfter.Withdraws)

	// Announcing again with the same scope sends nothing.
	before := r.internal.Imported("ipv4")
	require.NoError(t, s.Announce(ctx, vip4b, lbapi.AnnounceInternal))
	require.NoError(t, s.Announce(ctx, vip4, lbapi.AnnouncePublic))
	r.barrier(t, r.internal, lbapi.AnnouncePublic)
	after := r.internal.Imported("ipv4")
	require.Equal(t, before.Updates+1, after.Updates, "only the barrier was announced")
	require.Equal(t, before.Withdraws+1, after.Withdraws, "only the barrier was withdrawn")

	// Withdrawing takes a VIP away from every peer; withdrawing it again,
	// or a VIP never announced, is no error.
	require.NoError(t, s.Withdraw(ctx, vip4))
	require.NoError(t, s.Withdraw(ctx, vip6))
	for _, b := range []*birdPeer{r.internal, r.external} {
		lacksRoute(t, b, vip4)
		lacksRoute(t, b, vip6)
	}
	require.NoError(t, s.Withdraw(ctx, vip4))
	require.NoError(t, s.Withdraw(ctx, netip.MustParsePrefix("198.51.100.99/32")))
	require.Equal(t, map[netip.Prefix]string{vip4b: lbapi.AnnounceInternal}, s.Announced())
	require.NoError(t, testutil.CollectAndCompare(NewCollector(s), strings.NewReader(`
# HELP metalflow_lb_bgp_announced_routes VIP routes the node announces, by scope (internal: internal peers only; public: every peer).
# TYPE metalflow_lb_bgp_announced_routes gauge
metalflow_lb_bgp_announced_routes{scope="internal"} 1
metalflow_lb_bgp_announced_routes{scope="public"} 0
`), "metalflow_lb_bgp_announced_routes"))
}

// A drained or unhealthy node withdraws everything but keeps its sessions,
// ready to announce again.
func TestWithdrawAllKeepsSessions(t *testing.T) {
	r := newRack(t)
	s, ctx := r.speaker, context.Background()
	vip4, _, vip6 := testVIPs()
	require.NoError(t, s.Announce(ctx, vip4, lbapi.AnnouncePublic))
	require.NoError(t, s.Announce(ctx, vip6, lbapi.AnnounceInternal))
	r.hasRoute(t, r.external, vip4)
	r.hasRoute(t, r.internal, vip6)

	require.NoError(t, s.WithdrawAll(ctx))
	for _, b := range []*birdPeer{r.internal, r.external} {
		lacksRoute(t, b, vip4)
		lacksRoute(t, b, vip6)
	}
	require.Empty(t, s.Announced())
	require.Equal(t, "Established", r.internal.State())
	require.Equal(t, "Established", r.external.State())
	require.NoError(t, s.WithdrawAll(ctx), "withdrawing nothing is no error")

	require.NoError(t, s.Announce(ctx, vip4, lbapi.AnnouncePublic))
	r.hasRoute(t, r.external, vip4)
}

// Stop withdraws every route explicitly before it closes the sessions, so
// peers reroute at once rather than when they notice the session is gone.
func TestStopWithdrawsBeforeClosing(t *testing.T) {
	r := newRack(t)
	s, ctx := r.speaker, context.Background()
	vip4, vip4b, vip6 := testVIPs()
	require.NoError(t, s.Announce(ctx, vip4, lbapi.AnnouncePublic))
	require.NoError(t, s.Announce(ctx, vip6, lbapi.AnnouncePublic))
	require.NoError(t, s.Announce(ctx, vip4b, lbapi.AnnounceInternal))
	// Enough routes that their withdrawals take a while to write: gobgp
	// drops what it has not sent yet when a session closes.
	public := []netip.Prefix{vip4, vip6}
	for i := range 150 {
		v := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i / 100), byte(i % 100)}), 32)
		require.NoError(t, s.Announce(ctx, v, lbapi.AnnouncePublic))
		public = append(public, v)
	}
	for _, b := range []*birdPeer{r.internal, r.external} {
		for _, v := range public {
			r.hasRoute(t, b, v)
		}
	}
	r.hasRoute(t, r.internal, vip4b)

	began := time.Now()
	require.NoError(t, s.Stop(ctx))
	t.Logf("Stop took %s to withdraw %d routes from two peers and close", time.Since(began), len(public)+1)

	for _, tc := range []struct {
		bird *birdPeer
		vips []netip.Prefix
	}{
		{r.internal, append([]netip.Prefix{vip4b}, public...)},
		{r.external, public},
	} {
		for _, v := range tc.vips {
			lacksRoute(t, tc.bird, v)
		}
		waitFor(t, converge, func() (bool, string) {
			st := tc.bird.State()
			return st != "Established", st
		})
		// bird's debug log has one "> removed" line per withdrawn route,
		// and the node's Cease notification after them.
		events := tc.bird.Log(t)
		closed := strings.Index(events, "Received: Peer de-configured")
		require.GreaterOrEqual(t, closed, 0, "bird saw the session end: %s", events)
		for _, v := range tc.vips {
			removed := strings.Index(events, "> removed [sole] "+v.String()+" ")
			require.GreaterOrEqual(t, removed, 0, "bird at %s saw %s withdrawn: %s", tc.bird.Addr, v, events)
			require.Less(t, removed, closed, "bird at %s saw %s withdrawn before the session closed: %s", tc.bird.Addr, v, events)
		}
	}

	peers, err := s.Peers(ctx)
	require.NoError(t, err)
	for _, p := range peers {
		require.Equal(t, "idle", p.State)
	}
	require.Empty(t, s.Announced())
	require.ErrorContains(t, s.Announce(ctx, vip4, lbapi.AnnouncePublic), "bgp speaker is stopped")
	require.ErrorContains(t, s.Start(ctx), "already started")
	require.NoError(t, s.Stop(ctx), "stopping twice is no error")
	require.NoError(t, testutil.CollectAndCompare(NewCollector(s), strings.NewReader(`
# HELP metalflow_lb_bgp_session_up 1 if the BGP session to the peer is established, else 0.
# TYPE metalflow_lb_bgp_session_up gauge
metalflow_lb_bgp_session_up{external="false",peer="`+r.internal.Addr.String()+`"} 0
metalflow_lb_bgp_session_up{external="true",peer="`+r.external.Addr.String()+`"} 0
`), "metalflow_lb_bgp_session_up"))
}

// A session that goes down shows in Peers and the metrics, and comes back
// by itself with the node's routes when the peer returns.
func TestSessionDownAndBack(t *testing.T) {
	r := newRack(t)
	s, ctx := r.speaker, context.Background()
	vip4, _, _ := testVIPs()
	require.NoError(t, s.Announce(ctx, vip4, lbapi.AnnouncePublic))
	r.hasRoute(t, r.external, vip4)

	out, err := r.external.birdc("disable", "tor")
	require.NoError(t, err, out)
	waitFor(t, converge, func() (bool, string) {
		peers, err := s.Peers(ctx)
		require.NoError(t, err)
		return peers[1].State != "established", peers[1].State
	})
	require.NoError(t, testutil.CollectAndCompare(NewCollector(s), strings.NewReader(`
# HELP metalflow_lb_bgp_session_up 1 if the BGP session to the peer is established, else 0.
# TYPE metalflow_lb_bgp_session_up gauge
metalflow_lb_bgp_session_up{external="false",peer="`+r.internal.Addr.String()+`"} 1
metalflow_lb_bgp_session_up{external="true",peer="`+r.external.Addr.String()+`"} 0
`), "metalflow_lb_bgp_session_up"))

	out, err = r.external.birdc("enable", "tor")
	require.NoError(t, err, out)
	r.hasRoute(t, r.external, vip4)
	peers, err := s.Peers(ctx)
	require.NoError(t, err)
	require.Equal(t, "established", peers[1].State)
}

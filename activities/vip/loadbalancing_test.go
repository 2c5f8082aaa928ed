package vip

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// newLoadBalancing runs the activities on a real CMDB (SQLite), returned
// too so a test can set the scene and check what was recorded.
func newLoadBalancing(t *testing.T, pools vipapi.Pools) (*LoadBalancing, *inventory.Store) {
	t.Helper()
	s, err := inventory.Open(context.Background(), inventory.DialectSQLite, filepath.Join(t.TempDir(), "inventory.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return &LoadBalancing{Inventory: s, Pools: pools}, s
}

func requireAppErr(t *testing.T, err error, typ string) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "want an application error, got %v", err)
	require.Equal(t, typ, ae.Type())
	require.True(t, ae.NonRetryable(), "no retry fixes %s", typ)
	return ae
}

func TestListLBClustersHealthAndFailureDomains(t *testing.T) {
	lb, _ := newLoadBalancing(t, vipapi.Pools{})
	ctx := context.Background()
	now := time.Now()
	hb := func(cluster, node, domain string, healthy bool) lbapi.NodeHeartbeat {
		return lbapi.NodeHeartbeat{Cluster: cluster, Node: node, FailureDomain: domain, Capacity: 10, VIPs: 2, Healthy: healthy, At: now}
	}
	for _, in := range []vipapi.RecordLBNodeInput{
		{Heartbeat: hb("c1", "a", "dc1/A", true), SeenAt: now},
		{Heartbeat: hb("c1", "b", "dc1/A", true), SeenAt: now.Add(-time.Hour)}, // nobody heard of it for an hour
		{Heartbeat: hb("c1", "c", "dc1/A", true), SeenAt: now, Silent: true},
		{Heartbeat: lbapi.NodeHeartbeat{Cluster: "c1", Node: "d", FailureDomain: "dc1/A", Healthy: true, Stopping: true}, SeenAt: now},
		{Heartbeat: hb("c1", "e", "dc1/A", false), SeenAt: now},
		{Heartbeat: hb("c2", "a", "dc1/A", true), SeenAt: now},
		{Heartbeat: hb("c2", "b", "dc1/B", true), SeenAt: now},
		{Heartbeat: hb("c3", "a", "", true), SeenAt: now},
	} {
		require.NoError(t, lb.RecordLBNode(ctx, in))
	}
	res, err := lb.ListLBClusters(ctx, vipapi.ListLBClustersInput{})
	require.NoError(t, err)
	require.Len(t, res.Clusters, 3)
	c1 := res.Clusters[0]
	require.Equal(t, "c1", c1.Name)
	require.Equal(t, "dc1/A", c1.FailureDomain)
	up := map[string]bool{}
	for _, n := range c1.Nodes {
		up[n.Node] = n.Up
		if !n.Up {
			require.NotEmpty(t, n.Why, n.Node)
		}
	}
	require.Equal(t, map[string]bool{"a": true, "b": false, "c": false, "d": false, "e": false}, up)
	require.Empty(t, res.Clusters[1].FailureDomain, "nodes that disagree give the cluster no domain")
	require.Contains(t, res.Clusters[1].Problem, "disagree")
	require.Contains(t, res.Clusters[2].Problem, "no failure domain")
}

func TestAllocateVIPAddressFromTheExposuresPool(t *testing.T) {
	lb, store := newLoadBalancing(t, vipapi.Pools{Internal: netip.MustParsePrefix("10.96.0.0/30"), Public: netip.MustParsePrefix("2001:db8:50::/64")})
	ctx := context.Background()
	in, err := lb.AllocateVIPAddress(ctx, vipapi.AllocateVIPAddressInput{Name: "web", Exposure: lbapi.ExposureInternal})
	require.NoError(t, err)
	require.Equal(t, "10.96.0.1", in.Address)
	pub, err := lb.AllocateVIPAddress(ctx, vipapi.AllocateVIPAddressInput{Name: "shop", Exposure: lbapi.ExposurePublic})
	require.NoError(t, err)
	require.Equal(t, "2001:db8:50::1", pub.Address)
	_, err = lb.AllocateVIPAddress(ctx, vipapi.AllocateVIPAddressInput{Name: "api", Exposure: lbapi.ExposureInternal})
	require.NoError(t, err)
	_, err = lb.AllocateVIPAddress(ctx, vipapi.AllocateVIPAddressInput{Name: "full", Exposure: lbapi.ExposureInternal})
	requireAppErr(t, err, stepapi.ErrTypePoolExhausted)
	_, err = lb.AllocateVIPAddress(ctx, vipapi.AllocateVIPAddressInput{Name: "x", Exposure: "everyone"})
	requireAppErr(t, err, stepapi.ErrTypeInvalidPlacement)

	nopub, _ := newLoadBalancing(t, vipapi.Pools{Internal: netip.MustParsePrefix("10.96.0.0/24")})
	_, err = nopub.AllocateVIPAddress(ctx, vipapi.AllocateVIPAddressInput{Name: "shop", Exposure: lbapi.ExposurePublic})
	requireAppErr(t, err, stepapi.ErrTypeNoPool)

	require.NoError(t, lb.RecordVIP(ctx, vipapi.RecordVIPInput{Name: "web", State: "active", RequestedBy: "alice",
		Spec: lbapi.VIPSpec{Name: "web", Address: "10.96.0.1"}, Placement: []vipapi.VIPPlacement{{Cluster: "c1", Nodes: []string{"a"}}}}))
	rec, err := store.GetVIP(ctx, "web")
	require.NoError(t, err)
	require.Equal(t, "active", rec.State)
	require.JSONEq(t, `[{"cluster":"c1","failureDomain":"","nodes":["a"]}]`, string(rec.Placement))
	require.NoError(t, lb.ReleaseVIP(ctx, vipapi.ReleaseVIPInput{Name: "web"}))
	again, err := lb.AllocateVIPAddress(ctx, vipapi.AllocateVIPAddressInput{Name: "other", Exposure: lbapi.ExposureInternal})
	require.NoError(t, err)
	require.Equal(t, "10.96.0.1", again.Address, "a released address is free again")
}

func TestResolveServers(t *testing.T) {
	lb, s := newLoadBalancing(t, vipapi.Pools{})
	ctx := context.Background()
	require.NoError(t, s.EnsureSite(ctx, inventory.Site{Name: "dc1"}))
	require.NoError(t, s.CreateRack(ctx, inventory.Rack{Site: "dc1", Room: "A", Name: "R01", HeightU: 42}))
	require.NoError(t, s.PlaceAsset(ctx, "SN-1", inventory.Placement{Site: "dc1", Room: "A", Rack: "R01", Unit: 3, Face: "front"}, "test"))
	require.NoError(t, s.SetHostAddress(ctx, "SN-1", netip.MustParseAddr("10.0.1.11")))
	_, err := s.RegisterAsset(ctx, inventory.AssetRecord{Serial: "SN-2"}, "test")
	require.NoError(t, err)

	res, err := lb.ResolveServers(ctx, vipapi.ResolveServersInput{Serials: []string{"SN-1"}})
	require.NoError(t, err)
	require.Equal(t, []vipapi.ResolvedServer{{Serial: "SN-1", Address: "10.0.1.11", FailureDomain: "dc1/A/R01"}}, res.Servers)

	_, err = lb.ResolveServers(ctx, vipapi.ResolveServersInput{Serials: []string{"SN-1", "SN-2"}})
	ae := requireAppErr(t, err, stepapi.ErrTypeNoHostAddress)
	require.Contains(t, ae.Message(), "SN-2")
	_, err = lb.ResolveServers(ctx, vipapi.ResolveServersInput{Serials: []string{"SN-404"}})
	ae = requireAppErr(t, err, stepapi.ErrTypeUnknownServer)
	require.Contains(t, ae.Message(), "SN-404")
}

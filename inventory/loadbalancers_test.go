package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLBNodesUpsert(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		seen := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
		n := LBNode{Cluster: "c1", Node: "lb-1", FailureDomain: "dc1/A", Capacity: 100, VIPs: 3, Healthy: true, LastSeen: seen}
		require.NoError(t, s.RecordLBNode(ctx, n))
		require.NoError(t, s.RecordLBNode(ctx, LBNode{Cluster: "c0", Node: "lb-9", LastSeen: seen}))
		n.VIPs, n.Healthy, n.Stopping, n.LastSeen = 4, false, true, seen.Add(time.Minute)
		require.NoError(t, s.RecordLBNode(ctx, n))
		nodes, err := s.ListLBNodes(ctx)
		require.NoError(t, err)
		require.Len(t, nodes, 2)
		require.Equal(t, "c0", nodes[0].Cluster, "ordered by cluster")
		require.Equal(t, n, nodes[1], "the second heartbeat replaced the first")
		require.ErrorIs(t, s.RecordLBNode(ctx, LBNode{Node: "x"}), ErrInvalid)
	})
}

func TestVIPAllocationIsLowestFreeAndIdempotent(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		pool := netip.MustParsePrefix("10.96.0.0/29")
		a, err := s.AllocateVIPAddress(ctx, "web", "internal", pool)
		require.NoError(t, err)
		require.Equal(t, "10.96.0.1", a.String(), "the network address is never handed out")
		again, err := s.AllocateVIPAddress(ctx, "web", "internal", pool)
		require.NoError(t, err)
		require.Equal(t, a, again, "the same name keeps its address")
		_, err = s.AllocateVIPAddress(ctx, "web", "public", netip.MustParsePrefix("198.51.100.0/24"))
		require.ErrorIs(t, err, ErrInvalid, "a name cannot hold addresses from two pools")

		var names []string
		for i := 2; i <= 6; i++ {
			name := fmt.Sprintf("svc-%d", i)
			got, err := s.AllocateVIPAddress(ctx, name, "internal", pool)
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("10.96.0.%d", i), got.String())
			names = append(names, name)
		}
		_, err = s.AllocateVIPAddress(ctx, "one-too-many", "internal", pool)
		require.ErrorIs(t, err, ErrExhausted, "the broadcast address is never handed out either")

		// Released addresses are reused, lowest first.
		require.NoError(t, s.ReleaseVIP(ctx, "svc-3"))
		require.NoError(t, s.ReleaseVIP(ctx, "svc-3"), "releasing twice is harmless")
		got, err := s.AllocateVIPAddress(ctx, "late", "internal", pool)
		require.NoError(t, err)
		require.Equal(t, "10.96.0.3", got.String())

		v6, err := s.AllocateVIPAddress(ctx, "web6", "public", netip.MustParsePrefix("2001:db8:40::/120"))
		require.NoError(t, err)
		require.Equal(t, "2001:db8:40::1", v6.String())
		_, err = s.AllocateVIPAddress(ctx, "nopool", "public", netip.Prefix{})
		require.ErrorIs(t, err, ErrInvalid)
	})
}

func TestVIPConcurrentAllocationsNeverShareAnAddress(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		pool := netip.MustParsePrefix("10.97.0.0/24")
		const n = 16
		got := make([]netip.Addr, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				// Every name is allocated twice at once: the same name
				// must still end up with one address.
				got[i], errs[i] = s.AllocateVIPAddress(ctx, fmt.Sprintf("vip-%d", i/2), "internal", pool)
			}(i)
		}
		close(start)
		wg.Wait()
		byAddr := map[netip.Addr]string{}
		for i := 0; i < n; i++ {
			require.NoError(t, errs[i])
			name := fmt.Sprintf("vip-%d", i/2)
			if other, ok := byAddr[got[i]]; ok {
				require.Equal(t, name, other, "address %s handed to two VIPs", got[i])
			}
			byAddr[got[i]] = name
		}
		require.Len(t, byAddr, n/2)
		vips, err := s.ListVIPs(ctx)
		require.NoError(t, err)
		require.Len(t, vips, n/2)
		for _, v := range vips {
			a := netip.MustParseAddr(v.Address)
			require.True(t, a.Compare(netip.MustParseAddr("10.97.0.8")) <= 0, "lowest free first: %s", a)
		}
	})
}

func TestVIPRecord(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		require.ErrorIs(t, s.RecordVIP(ctx, VIPRecord{Name: "web", State: "active"}), ErrNotFound, "no address, no record")
		_, err := s.AllocateVIPAddress(ctx, "web", "public", netip.MustParsePrefix("198.51.100.0/24"))
		require.NoError(t, err)
		require.NoError(t, s.RecordVIP(ctx, VIPRecord{Name: "web", State: "awaiting-approval", RequestedBy: "alice",
			Spec: json.RawMessage(`{"name":"web"}`), Placement: json.RawMessage(`[{"cluster":"c1"}]`)}))
		v, err := s.GetVIP(ctx, "web")
		require.NoError(t, err)
		require.Equal(t, "198.51.100.1", v.Address)
		require.Equal(t, "public", v.Exposure)
		require.Equal(t, "awaiting-approval", v.State)
		require.Equal(t, "alice", v.RequestedBy)
		require.JSONEq(t, `{"name":"web"}`, string(v.Spec))
		require.JSONEq(t, `[{"cluster":"c1"}]`, string(v.Placement))
		require.NoError(t, s.ReleaseVIP(ctx, "web"))
		_, err = s.GetVIP(ctx, "web")
		require.ErrorIs(t, err, ErrNotFound)
	})
}

func TestHostAddress(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		_, err := s.RegisterAsset(ctx, AssetRecord{Serial: "SN-1"}, "test")
		require.NoError(t, err)
		a, err := s.GetHostAddress(ctx, "SN-1")
		require.NoError(t, err)
		require.False(t, a.IsValid(), "no address until the boot service sets one")
		require.NoError(t, s.SetHostAddress(ctx, "SN-1", netip.MustParseAddr("10.0.1.11")))
		a, err = s.GetHostAddress(ctx, "SN-1")
		require.NoError(t, err)
		require.Equal(t, "10.0.1.11", a.String())
		require.ErrorIs(t, s.SetHostAddress(ctx, "SN-404", netip.MustParseAddr("10.0.1.12")), ErrNotFound)
		require.ErrorIs(t, s.SetHostAddress(ctx, "SN-1", netip.Addr{}), ErrInvalid)
		_, err = s.GetHostAddress(ctx, "SN-404")
		require.ErrorIs(t, err, ErrNotFound)
		// Other asset writes keep the host address.
		_, err = s.RegisterAsset(ctx, AssetRecord{Serial: "SN-1", Vendor: "Dell"}, "test")
		require.NoError(t, err)
		a, err = s.GetHostAddress(ctx, "SN-1")
		require.NoError(t, err)
		require.Equal(t, "10.0.1.11", a.String())
	})
}

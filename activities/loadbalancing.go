package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// LoadBalancing runs the load-balancing activities on metalflow's queue:
// the inventory side of VIPs and LB nodes. The nodes themselves are
// programmed by activities on their own queues (package lbnode/agent).
type LoadBalancing struct {
	Inventory *inventory.Store
	Pools     Pools
}

// Register registers the load-balancing activities under their stable names.
func (l *LoadBalancing) Register(r Registrar) {
	for name, fn := range map[string]any{
		RecordLBNodeName:       l.RecordLBNode,
		ListLBClustersName:     l.ListLBClusters,
		AllocateVIPAddressName: l.AllocateVIPAddress,
		RecordVIPName:          l.RecordVIP,
		ReleaseVIPName:         l.ReleaseVIP,
		ResolveServersName:     l.ResolveServers,
		ListPlacedVIPsName:     l.ListPlacedVIPs,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// RecordLBNode upserts the node's row.
func (l *LoadBalancing) RecordLBNode(ctx context.Context, in RecordLBNodeInput) error {
	hb := in.Heartbeat
	seen := in.SeenAt
	if seen.IsZero() {
		seen = hb.At
	}
	return classify(l.Inventory.RecordLBNode(ctx, inventory.LBNode{
		Cluster: hb.Cluster, Node: hb.Node, FailureDomain: hb.FailureDomain, Capacity: hb.Capacity, VIPs: hb.VIPs,
		Healthy: hb.Healthy && !in.Silent, Stopping: hb.Stopping, LastSeen: seen,
	}))
}

// ListLBClusters groups the recorded nodes into clusters and says which
// nodes are up: a node is down when it said it is stopping or unhealthy, or
// when its row is older than three refresh intervals (its registry would
// have refreshed it had it heard from the node).
func (l *LoadBalancing) ListLBClusters(ctx context.Context, _ ListLBClustersInput) (ListLBClustersResult, error) {
	nodes, err := l.Inventory.ListLBNodes(ctx)
	if err != nil {
		return ListLBClustersResult{}, err
	}
	now := time.Now()
	byName := map[string]*LBCluster{}
	var names []string
	for _, n := range nodes {
		c := byName[n.Cluster]
		if c == nil {
			c = &LBCluster{Name: n.Cluster}
			byName[n.Cluster] = c
			names = append(names, n.Cluster)
		}
		st := LBNodeState{Node: n.Node, FailureDomain: n.FailureDomain, Capacity: n.Capacity, VIPs: n.VIPs, Up: true}
		switch {
		case n.Stopping:
			st.Up, st.Why = false, "stopping"
		case !n.Healthy:
			st.Up, st.Why = false, "unhealthy or silent"
		case now.Sub(n.LastSeen) > 3*LBNodeRefreshInterval:
			st.Up, st.Why = false, fmt.Sprintf("last heard of at %s", n.LastSeen.Format(time.RFC3339))
		}
		c.Nodes = append(c.Nodes, st)
	}
	sort.Strings(names)
	out := ListLBClustersResult{Clusters: []LBCluster{}}
	for _, name := range names {
		c := byName[name]
		domains := map[string]bool{}
		for _, n := range c.Nodes {
			if n.FailureDomain != "" {
				domains[n.FailureDomain] = true
			}
		}
		switch len(domains) {
		case 0:
			c.Problem = "its nodes name no failure domain"
		case 1:
			for d := range domains {
				c.FailureDomain = d
			}
		default:
			ds := make([]string, 0, len(domains))
			for d := range domains {
				ds = append(ds, d)
			}
			sort.Strings(ds)
			c.Problem = fmt.Sprintf("its nodes disagree on the failure domain: %v", ds)
		}
		out.Clusters = append(out.Clusters, *c)
	}
	return out, nil
}

// AllocateVIPAddress gives the VIP the lowest free address of its
// exposure's pool; the same name again gets the same address.
func (l *LoadBalancing) AllocateVIPAddress(ctx context.Context, in AllocateVIPAddressInput) (AllocateVIPAddressResult, error) {
	var pool netip.Prefix
	switch in.Exposure {
	case lbapi.ExposureInternal:
		pool = l.Pools.Internal
	case lbapi.ExposurePublic:
		pool = l.Pools.Public
	default:
		return AllocateVIPAddressResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("exposure %q, want %s or %s", in.Exposure, lbapi.ExposureInternal, lbapi.ExposurePublic), ErrTypeInvalidPlacement, nil)
	}
	if !pool.IsValid() {
		return AllocateVIPAddressResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no %s VIP address pool is configured on this worker", in.Exposure), ErrTypeNoPool, nil)
	}
	addr, err := l.Inventory.AllocateVIPAddress(ctx, in.Name, in.Exposure, pool)
	if errors.Is(err, inventory.ErrExhausted) {
		return AllocateVIPAddressResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypePoolExhausted, nil)
	}
	if err != nil {
		return AllocateVIPAddressResult{}, classify(err)
	}
	return AllocateVIPAddressResult{Address: addr.String()}, nil
}

// RecordVIP stores the VIP's state, spec and placement; idempotent.
func (l *LoadBalancing) RecordVIP(ctx context.Context, in RecordVIPInput) error {
	spec, err := json.Marshal(in.Spec)
	if err != nil {
		return err
	}
	placement, err := json.Marshal(in.Placement)
	if err != nil {
		return err
	}
	return classify(l.Inventory.RecordVIP(ctx, inventory.VIPRecord{
		Name: in.Name, State: in.State, RequestedBy: in.RequestedBy, ApprovedBy: in.ApprovedBy, Spec: spec, Placement: placement,
	}))
}

// ListPlacedVIPs names the VIPs whose recorded placement includes the
// cluster: the VIPs a node coming up in it should run.
func (l *LoadBalancing) ListPlacedVIPs(ctx context.Context, in ListPlacedVIPsInput) (ListPlacedVIPsResult, error) {
	vips, err := l.Inventory.ListVIPs(ctx)
	if err != nil {
		return ListPlacedVIPsResult{}, classify(err)
	}
	out := ListPlacedVIPsResult{Names: []string{}}
	for _, v := range vips {
		if len(v.Placement) == 0 {
			continue
		}
		var placed []VIPPlacement
		if err := json.Unmarshal(v.Placement, &placed); err != nil {
			// One unreadable row must not keep the node from every other VIP.
			activity.GetLogger(ctx).Warn("unreadable VIP placement", "vip", v.Name, "error", err)
			continue
		}
		for _, p := range placed {
			if p.Cluster == in.Cluster {
				out.Names = append(out.Names, v.Name)
				break
			}
		}
	}
	return out, nil
}

// ReleaseVIP frees the VIP's address; releasing twice is harmless.
func (l *LoadBalancing) ReleaseVIP(ctx context.Context, in ReleaseVIPInput) error {
	return l.Inventory.ReleaseVIP(ctx, in.Name)
}

// ResolveServers turns serials into backend addresses. A serial the CMDB
// does not know, or a server without a host address yet, is a clear refusal,
// not something a retry fixes.
func (l *LoadBalancing) ResolveServers(ctx context.Context, in ResolveServersInput) (ResolveServersResult, error) {
	out := ResolveServersResult{Servers: []ResolvedServer{}}
	for _, serial := range in.Serials {
		asset, err := l.Inventory.GetAsset(ctx, serial)
		if errors.Is(err, inventory.ErrNotFound) {
			return ResolveServersResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("server %s is not in the inventory", serial), ErrTypeUnknownServer, nil)
		}
		if err != nil {
			return ResolveServersResult{}, err
		}
		addr, err := l.Inventory.GetHostAddress(ctx, serial)
		if err != nil {
			return ResolveServersResult{}, classify(err)
		}
		if !addr.IsValid() {
			return ResolveServersResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("server %s has no host address yet (state %s)", serial, asset.State), ErrTypeNoHostAddress, nil)
		}
		r := ResolvedServer{Serial: serial, Address: addr.String()}
		if p := asset.Placement; p != nil {
			r.FailureDomain = p.Site + "/" + p.Room + "/" + p.Rack
		}
		out.Servers = append(out.Servers, r)
	}
	return out, nil
}

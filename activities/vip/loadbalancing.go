// Package vip runs the inventory side of load balancing on metalflow's
// queue: LB nodes, VIP addresses and placement records. The nodes themselves
// are programmed by activities on their own queues (package lbnode/agent).
package vip

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

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// LoadBalancing runs the load-balancing activities.
type LoadBalancing struct {
	Inventory LBInventory
	Pools     vipapi.Pools
}

// LBInventory is what load balancing reads and writes in the CMDB.
type LBInventory interface {
	RecordLBNode(ctx context.Context, n inventory.LBNode) error
	ListLBNodes(ctx context.Context) ([]inventory.LBNode, error)
	AllocateVIPAddress(ctx context.Context, name, exposure string, pool netip.Prefix) (netip.Addr, error)
	RecordVIP(ctx context.Context, v inventory.VIPRecord) error
	ListVIPs(ctx context.Context) ([]inventory.VIPRecord, error)
	ReleaseVIP(ctx context.Context, name string) error
	GetAsset(ctx context.Context, serial string) (inventory.Asset, error)
	GetHostAddress(ctx context.Context, serial string) (netip.Addr, error)
}

// Register registers the load-balancing activities under their stable names.
func (l *LoadBalancing) Register(r activities.Registrar) {
	for name, fn := range map[string]any{
		vipapi.RecordLBNodeName:       l.RecordLBNode,
		vipapi.ListLBClustersName:     l.ListLBClusters,
		vipapi.AllocateVIPAddressName: l.AllocateVIPAddress,
		vipapi.RecordVIPName:          l.RecordVIP,
		vipapi.ReleaseVIPName:         l.ReleaseVIP,
		vipapi.ResolveServersName:     l.ResolveServers,
		vipapi.ListPlacedVIPsName:     l.ListPlacedVIPs,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// RecordLBNode upserts the node's row.
func (l *LoadBalancing) RecordLBNode(ctx context.Context, in vipapi.RecordLBNodeInput) error {
	hb := in.Heartbeat
	seen := in.SeenAt
	if seen.IsZero() {
		seen = hb.At
	}
	return activities.InventoryError(l.Inventory.RecordLBNode(ctx, inventory.LBNode{
		Cluster: hb.Cluster, Node: hb.Node, FailureDomain: hb.FailureDomain, Capacity: hb.Capacity, VIPs: hb.VIPs,
		Healthy: hb.Healthy && !in.Silent, Stopping: hb.Stopping, LastSeen: seen,
	}))
}

// ListLBClusters groups the recorded nodes into clusters and says which
// nodes are up: a node is down when it said it is stopping or unhealthy, or
// when its row is older than three refresh intervals (its registry would
// have refreshed it had it heard from the node).
func (l *LoadBalancing) ListLBClusters(ctx context.Context, _ vipapi.ListLBClustersInput) (vipapi.ListLBClustersResult, error) {
	nodes, err := l.Inventory.ListLBNodes(ctx)
	if err != nil {
		return vipapi.ListLBClustersResult{}, err
	}
	now := time.Now()
	byName := map[string]*vipapi.LBCluster{}
	var names []string
	for _, n := range nodes {
		c := byName[n.Cluster]
		if c == nil {
			c = &vipapi.LBCluster{Name: n.Cluster}
			byName[n.Cluster] = c
			names = append(names, n.Cluster)
		}
		st := vipapi.LBNodeState{Node: n.Node, FailureDomain: n.FailureDomain, Capacity: n.Capacity, VIPs: n.VIPs, Up: true}
		switch {
		case n.Stopping:
			st.Up, st.Why = false, "stopping"
		case !n.Healthy:
			st.Up, st.Why = false, "unhealthy or silent"
		case now.Sub(n.LastSeen) > 3*vipapi.LBNodeRefreshInterval:
			st.Up, st.Why = false, fmt.Sprintf("last heard of at %s", n.LastSeen.Format(time.RFC3339))
		}
		c.Nodes = append(c.Nodes, st)
	}
	sort.Strings(names)
	out := vipapi.ListLBClustersResult{Clusters: []vipapi.LBCluster{}}
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
func (l *LoadBalancing) AllocateVIPAddress(ctx context.Context, in vipapi.AllocateVIPAddressInput) (vipapi.AllocateVIPAddressResult, error) {
	var pool netip.Prefix
	switch in.Exposure {
	case lbapi.ExposureInternal:
		pool = l.Pools.Internal
	case lbapi.ExposurePublic:
		pool = l.Pools.Public
	default:
		return vipapi.AllocateVIPAddressResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("exposure %q, want %s or %s", in.Exposure, lbapi.ExposureInternal, lbapi.ExposurePublic), stepapi.ErrTypeInvalidPlacement, nil)
	}
	if !pool.IsValid() {
		return vipapi.AllocateVIPAddressResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no %s VIP address pool is configured on this worker", in.Exposure), stepapi.ErrTypeNoPool, nil)
	}
	addr, err := l.Inventory.AllocateVIPAddress(ctx, in.Name, in.Exposure, pool)
	if errors.Is(err, inventory.ErrExhausted) {
		return vipapi.AllocateVIPAddressResult{}, temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypePoolExhausted, nil)
	}
	if err != nil {
		return vipapi.AllocateVIPAddressResult{}, activities.InventoryError(err)
	}
	return vipapi.AllocateVIPAddressResult{Address: addr.String()}, nil
}

// RecordVIP stores the VIP's state, spec and placement; idempotent.
func (l *LoadBalancing) RecordVIP(ctx context.Context, in vipapi.RecordVIPInput) error {
	spec, err := json.Marshal(in.Spec)
	if err != nil {
		return err
	}
	placement, err := json.Marshal(in.Placement)
	if err != nil {
		return err
	}
	return activities.InventoryError(l.Inventory.RecordVIP(ctx, inventory.VIPRecord{
		Name: in.Name, State: in.State, RequestedBy: in.RequestedBy, ApprovedBy: in.ApprovedBy, Spec: spec, Placement: placement,
	}))
}

// ListPlacedVIPs names the VIPs whose recorded placement includes the
// cluster: the VIPs a node coming up in it should run.
func (l *LoadBalancing) ListPlacedVIPs(ctx context.Context, in vipapi.ListPlacedVIPsInput) (vipapi.ListPlacedVIPsResult, error) {
	vips, err := l.Inventory.ListVIPs(ctx)
	if err != nil {
		return vipapi.ListPlacedVIPsResult{}, activities.InventoryError(err)
	}
	out := vipapi.ListPlacedVIPsResult{Names: []string{}}
	for _, v := range vips {
		if len(v.Placement) == 0 {
			continue
		}
		var placed []vipapi.VIPPlacement
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
func (l *LoadBalancing) ReleaseVIP(ctx context.Context, in vipapi.ReleaseVIPInput) error {
	return l.Inventory.ReleaseVIP(ctx, in.Name)
}

// ResolveServers turns serials into backend addresses. A serial the CMDB
// does not know, or a server without a host address yet, is a clear refusal,
// not something a retry fixes.
func (l *LoadBalancing) ResolveServers(ctx context.Context, in vipapi.ResolveServersInput) (vipapi.ResolveServersResult, error) {
	out := vipapi.ResolveServersResult{Servers: []vipapi.ResolvedServer{}}
	for _, serial := range in.Serials {
		asset, err := l.Inventory.GetAsset(ctx, serial)
		if errors.Is(err, inventory.ErrNotFound) {
			return vipapi.ResolveServersResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("server %s is not in the inventory", serial), stepapi.ErrTypeUnknownServer, nil)
		}
		if err != nil {
			return vipapi.ResolveServersResult{}, err
		}
		addr, err := l.Inventory.GetHostAddress(ctx, serial)
		if err != nil {
			return vipapi.ResolveServersResult{}, activities.InventoryError(err)
		}
		if !addr.IsValid() {
			return vipapi.ResolveServersResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("server %s has no host address yet (state %s)", serial, asset.State), stepapi.ErrTypeNoHostAddress, nil)
		}
		r := vipapi.ResolvedServer{Serial: serial, Address: addr.String()}
		if p := asset.Placement; p != nil {
			r.FailureDomain = p.Site + "/" + p.Room + "/" + p.Rack
		}
		out.Servers = append(out.Servers, r)
	}
	return out, nil
}

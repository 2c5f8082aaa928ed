package vipapi

import (
	"net/netip"
	"time"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Activity names of load balancing on metalflow's own queue. Part of
// recorded histories: never rename them.
const (
	RecordLBNodeName       = "RecordLBNode"
	ListLBClustersName     = "ListLBClusters"
	AllocateVIPAddressName = "AllocateVIPAddress"
	RecordVIPName          = "RecordVIP"
	ReleaseVIPName         = "ReleaseVIP"
	ResolveServersName     = "ResolveServers"
	ListPlacedVIPsName     = "ListPlacedVIPs"
)

// LBHeartbeatInterval is how often an lbnode sends its heartbeat (the
// agent's default).
const LBHeartbeatInterval = 15 * time.Second

// LBNodeRefreshInterval is how often a node's registry workflow records an
// unchanged heartbeat: often enough that the row's last_seen proves the node
// and its registry alive, rarely enough to keep the history small. A row
// older than three of these belongs to a node nobody has heard from.
const LBNodeRefreshInterval = 2 * time.Minute

// Pools are the address ranges VIPs are given addresses from, one per
// exposure.
type Pools struct {
	Internal netip.Prefix
	Public   netip.Prefix
}

// RecordLBNodeInput is one heartbeat as the registry workflow saw it.
type RecordLBNodeInput struct {
	Heartbeat lbapi.NodeHeartbeat `json:"heartbeat"`
	// SeenAt is when the registry received the heartbeat (metalflow's
	// clock, not the node's).
	SeenAt time.Time `json:"seenAt"`
	// Silent says the node stopped sending heartbeats: it is recorded
	// down, with the time of its last heartbeat.
	Silent bool `json:"silent,omitempty"`
}

// ListLBClustersInput has nothing to narrow yet.
type ListLBClustersInput struct{}

// LBNodeState is one node as placement sees it.
type LBNodeState struct {
	Node          string `json:"node"`
	FailureDomain string `json:"failureDomain,omitempty"`
	Capacity      int    `json:"capacity"`
	VIPs          int    `json:"vips"`
	Up            bool   `json:"up"`
	// Why says why a node is down.
	Why string `json:"why,omitempty"`
}

// LBCluster is one cluster of LB nodes.
type LBCluster struct {
	Name string `json:"name"`
	// FailureDomain is the one its nodes share; "" when they do not agree
	// or say none, and Problem says so.
	FailureDomain string        `json:"failureDomain,omitempty"`
	Nodes         []LBNodeState `json:"nodes"`
	Problem       string        `json:"problem,omitempty"`
}

// ListLBClustersResult lists clusters by name.
type ListLBClustersResult struct {
	Clusters []LBCluster `json:"clusters"`
}

// AllocateVIPAddressInput names the VIP and the pool by its exposure.
type AllocateVIPAddressInput struct {
	Name     string `json:"name"`
	Exposure string `json:"exposure"`
}

// AllocateVIPAddressResult is the VIP's address.
type AllocateVIPAddressResult struct {
	Address string `json:"address"`
}

// VIPPlacement is one cluster a VIP runs on, as the inventory records it.
type VIPPlacement struct {
	Cluster       string   `json:"cluster"`
	FailureDomain string   `json:"failureDomain"`
	Nodes         []string `json:"nodes"`
}

// RecordVIPInput is what a VIP's workflow last did.
type RecordVIPInput struct {
	Name        string         `json:"name"`
	State       string         `json:"state"`
	RequestedBy string         `json:"requestedBy,omitempty"`
	ApprovedBy  string         `json:"approvedBy,omitempty"`
	Spec        lbapi.VIPSpec  `json:"spec"`
	Placement   []VIPPlacement `json:"placement"`
}

// ListPlacedVIPsInput names a cluster.
type ListPlacedVIPsInput struct {
	Cluster string `json:"cluster"`
}

// ListPlacedVIPsResult names the VIPs placed on the cluster, by name.
type ListPlacedVIPsResult struct {
	Names []string `json:"names"`
}

// ReleaseVIPInput names the retired VIP.
type ReleaseVIPInput struct {
	Name string `json:"name"`
}

// ResolveServersInput names servers by serial.
type ResolveServersInput struct {
	Serials []string `json:"serials"`
}

// ResolvedServer is where a server answers and where it stands.
type ResolvedServer struct {
	Serial  string `json:"serial"`
	Address string `json:"address"`
	// FailureDomain is "site/room/rack"; "" for a server not racked.
	FailureDomain string `json:"failureDomain,omitempty"`
}

// ResolveServersResult lists the servers in the order asked.
type ResolveServersResult struct {
	Servers []ResolvedServer `json:"servers"`
}

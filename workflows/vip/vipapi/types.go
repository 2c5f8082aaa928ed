package vipapi

import (
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// VIPRolloutInput asks for a VIP. Where it runs is the platform's choice:
// the requester says how many clusters, never which.
type VIPRolloutInput struct {
	Name     string   `json:"name"`
	Protocol string   `json:"protocol"`
	Ports    []uint16 `json:"ports"`
	// Backends are given by address; Servers by serial, resolved to their
	// host addresses through the inventory.
	Backends []lbapi.Backend `json:"backends,omitempty"`
	Servers  []string        `json:"servers,omitempty"`
	// Exposure is internal (the default) or public; public needs approval.
	Exposure string `json:"exposure,omitempty"`
	// Clusters is how many clusters, in different failure domains, run
	// the VIP; 0 means DefaultVIPClusters.
	Clusters    int                `json:"clusters,omitempty"`
	HealthCheck *lbapi.HealthCheck `json:"healthCheck,omitempty"`
	RequestedBy string             `json:"requestedBy,omitempty"`
	// Resume is what the previous run knew, after a continue-as-new.
	Resume *VIPState `json:"resume,omitempty"`
}

// ApproveInput publishes a public VIP: only an approver or an admin other
// than the requester may.
type ApproveInput struct {
	By   string `json:"by"`
	Role string `json:"role"`
}

// RejectInput refuses a public VIP, which is then retired.
type RejectInput struct {
	By     string `json:"by"`
	Role   string `json:"role"`
	Reason string `json:"reason,omitempty"`
}

// BackendsInput changes a running VIP's backends. Add also replaces a
// backend of the same address (another weight, undrained); a weight of 0
// means DefaultBackendWeight (drain a backend to take it out).
type BackendsInput struct {
	Add    []lbapi.Backend `json:"add,omitempty"`
	Remove []string        `json:"remove,omitempty"`
	Drain  []string        `json:"drain,omitempty"`
	// Servers adds servers by serial.
	Servers []string `json:"servers,omitempty"`
	By      string   `json:"by,omitempty"`
}

// RetireInput takes a VIP down for good and frees its address.
type RetireInput struct {
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// VIPStatus answers the status query and every VIP update.
type VIPStatus struct {
	Name     string   `json:"name"`
	RunID    string   `json:"runId,omitempty"`
	Address  string   `json:"address,omitempty"`
	Exposure string   `json:"exposure"`
	State    string   `json:"state"`
	Protocol string   `json:"protocol"`
	Ports    []uint16 `json:"ports"`
	// Announce is the scope the nodes announce the VIP with.
	Announce string `json:"announce,omitempty"`
	// Digest is lbapi.Digest of the spec every node should run.
	Digest      string             `json:"digest,omitempty"`
	Placement   []ClusterPlacement `json:"placement"`
	Backends    []BackendStatus    `json:"backends"`
	HealthCheck *lbapi.HealthCheck `json:"healthCheck,omitempty"`
	Warnings    []string           `json:"warnings,omitempty"`
	RequestedBy string             `json:"requestedBy,omitempty"`
	ApprovedBy  string             `json:"approvedBy,omitempty"`
	Attention   *stepapi.Attention `json:"attention,omitempty"`
	// AwaitingApproval: a public VIP not yet approved (it runs with
	// internal scope meanwhile).
	AwaitingApproval bool `json:"awaitingApproval"`
}

// ClusterPlacement is one cluster a VIP runs on.
type ClusterPlacement struct {
	Cluster       string          `json:"cluster"`
	FailureDomain string          `json:"failureDomain"`
	Nodes         []NodePlacement `json:"nodes"`
}

// NodePlacement is the VIP on one node.
type NodePlacement struct {
	Node  string `json:"node"`
	State string `json:"state"`
	// Digest is what the node last reported running.
	Digest string `json:"digest,omitempty"`
}

// BackendStatus is one backend with what the nodes say of it.
type BackendStatus struct {
	lbapi.Backend
	FailureDomain string `json:"failureDomain,omitempty"`
	// Health is BackendUp or BackendDown; a backend any node reports down
	// is drained on every node.
	Health string `json:"health"`
	// DownOn lists the nodes ("cluster/node") that report it down.
	DownOn []string `json:"downOn,omitempty"`
}

// VIPState is what a VIP's workflow knows, carried over a continue-as-new.
type VIPState struct {
	Address    string `json:"address"`
	State      string `json:"state"`
	ApprovedBy string `json:"approvedBy,omitempty"`
	// Announce is the scope the VIP's nodes run it with: internal once
	// rolled out, public only after an accepted approval.
	Announce  string         `json:"announce,omitempty"`
	Placement []VIPPlacement `json:"placement"`
	Backends  []VIPBackend   `json:"backends"`
	// Nodes is every node the VIP was ever applied to and not removed
	// from, including those left outside the placement after a failed
	// rollback; ordered by key.
	Nodes    []VIPNode `json:"nodes"`
	Warnings []string  `json:"warnings,omitempty"`
	// Joining is the nodes ("cluster/node") that came up and wait to be
	// brought in (SignalNodeUp).
	Joining []string `json:"joining,omitempty"`
}

// VIPBackend is a desired backend and the nodes that report it down.
type VIPBackend struct {
	lbapi.Backend
	FailureDomain string   `json:"failureDomain,omitempty"`
	DownOn        []string `json:"downOn,omitempty"`
}

// VIPNode is the VIP on one node as the workflow last left it.
type VIPNode struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	// Spec is what the node runs; nil when the VIP is not on it.
	Spec   *lbapi.VIPSpec `json:"spec,omitempty"`
	State  string         `json:"state"`
	Digest string         `json:"digest,omitempty"`
	// Unsure says an apply or a rollback failed half-way: the node may
	// run anything, and a retire must still remove the VIP from it.
	Unsure bool `json:"unsure,omitempty"`
}

// Key names the node as "cluster/node".
func (n VIPNode) Key() string { return n.Cluster + "/" + n.Node }

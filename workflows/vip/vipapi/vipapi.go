package vipapi

import (
	"time"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// LBNodeRegistryInput starts (or continues) the registry of one node. The
// lbnode signals-with-start it; what it passes as input is ignored beyond
// the cluster and node, which the heartbeats carry anyway.
type LBNodeRegistryInput struct {
	Cluster string `json:"cluster,omitempty"`
	Node    string `json:"node,omitempty"`
	// Carried is what the previous run knew, after a continue-as-new.
	Carried *LBNodeRegistryState `json:"carried,omitempty"`
}

// LBNodeRegistryState is what the registry knows of its node; the status
// query returns it.
type LBNodeRegistryState struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
	// Last is the last heartbeat received, LastSeen when (metalflow's clock).
	Last     lbapi.NodeHeartbeat `json:"last"`
	LastSeen time.Time           `json:"lastSeen"`
	// Recorded is the heartbeat last written to the inventory, RecordedAt
	// when; Down says the node was recorded down for its silence.
	Recorded   *lbapi.NodeHeartbeat `json:"recorded,omitempty"`
	RecordedAt time.Time            `json:"recordedAt"`
	Down       bool                 `json:"down"`
	// Heartbeats counts heartbeats in this run.
	Heartbeats int `json:"heartbeats"`
}

// Names that reach a VIP's workflow (ID lbapi.VIPWorkflowID). Part of the
// API contract and of recorded histories: never rename them. The status
// query is QueryStatus; retry and abort are UpdateRetry and UpdateAbort.
const (
	VIPRolloutName = "VIPRollout"
	UpdateApprove  = "approve"
	UpdateReject   = "reject"
	UpdateBackends = "backends"
	UpdateRetire   = "retire"
)

// VIP states as the API and the operator UI show them.
const (
	VIPStatePlacing          = "placing"
	VIPStateRollingOut       = "rolling-out"
	VIPStateAwaitingApproval = "awaiting-approval"
	VIPStatePublishing       = "publishing"
	VIPStateActive           = "active"
	VIPStateUpdating         = "updating"
	VIPStateAttention        = stepapi.StateAttention
	VIPStateRetiring         = "retiring"
	VIPStateRetired          = "retired"
	VIPStateRejected         = "rejected"
	VIPStateAborted          = "aborted"
)

// States of a VIP on one node.
const (
	NodePending = "pending"
	// NodeProgrammed: the node runs the spec, verified, unannounced.
	NodeProgrammed = "programmed"
	// NodeAnnounced: the node runs the spec and announces it.
	NodeAnnounced = "announced"
	NodeFailed    = "failed"
	// NodeForgotten: the node was down when the VIP was retired.
	NodeForgotten = "forgotten"
	// NodeUnreachable: no worker took the node's task; it did not change.
	NodeUnreachable = "unreachable"
	NodeRolledBack  = "rolled-back"
	NodeRemoved     = "removed"
)

// Backend health as the status shows it.
const (
	BackendUp   = "up"
	BackendDown = "down"
)

// Roles that may approve or reject a public VIP.
const (
	RoleApprover = "approver"
	RoleAdmin    = "admin"
)

// What a VIP's workflow does, in the operator's words: the step an
// attention names.
const (
	VIPStepAllocateAddress = "AllocateAddress"
	VIPStepPlace           = "Place"
	VIPStepRollOut         = "RollOut"
	VIPStepPublish         = "Publish"
	VIPStepBackends        = "Backends"
	VIPStepBackendHealth   = "BackendHealth"
	VIPStepRetire          = "Retire"
)

// VIPSteps lists every step a VIP's attention can name.
func VIPSteps() []string {
	return []string{VIPStepAllocateAddress, VIPStepPlace, VIPStepRollOut, VIPStepPublish, VIPStepBackends,
		VIPStepBackendHealth, VIPStepJoinNodes, VIPStepRetire}
}

// SignalNodeUp tells a VIP's workflow that a node of one of its clusters
// came up: a node added to the cluster after the VIP was placed, one that
// was down at placement, or one that restarted (perhaps reinstalled, with
// nothing programmed). A node's registry sends it. Part of recorded
// histories: never rename it.
const SignalNodeUp = "node-up"

// NodeUp names the node that came up.
type NodeUp struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
}

// VIPStepJoinNodes brings nodes that came up into the VIP's placement.
const VIPStepJoinNodes = "JoinNodes"

// UpdateReport asks a VIP's workflow for the traffic counters of every node
// it is placed on. It is an update, not a query, because only activities
// reach the nodes; the API calls it when someone reads one VIP.
const UpdateReport = "report"

// VIPReport is what the nodes say about a VIP, node by node.
type VIPReport struct {
	Nodes []NodeTraffic `json:"nodes"`
	// Total adds up the VIP's packets and bytes over the nodes that
	// answered.
	Total lbapi.Counter `json:"total"`
}

// NodeTraffic is one node's counters for the VIP, or why there are none.
type NodeTraffic struct {
	Cluster  string                `json:"cluster"`
	Node     string                `json:"node"`
	Counter  lbapi.Counter         `json:"counter"`
	Backends []lbapi.BackendReport `json:"backends,omitempty"`
	// Announced is the scope the node's BGP speaker has the route in.
	Announced string `json:"announced,omitempty"`
	Error     string `json:"error,omitempty"`
}

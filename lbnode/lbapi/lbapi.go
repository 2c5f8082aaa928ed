// Package lbapi is the contract between metalflow's VIP workflows and the
// lbnode workers on the load-balancer nodes: task queue names, activity and
// signal names, and the payloads they carry. It has no dependencies beyond
// the standard library so that deterministic workflow code can import it
// without pulling in the data plane.
//
// The names here end up in workflow histories: never rename them.
package lbapi

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// TaskQueue is the queue one LB node's worker polls: work for a node goes to
// that node and no other.
func TaskQueue(cluster, node string) string { return "lbnode/" + cluster + "/" + node }

// Activities every lbnode worker registers.
const (
	// ApplyVIPName makes a VIP on the node exactly ApplyVIPInput.Spec;
	// applying the same spec twice changes nothing.
	ApplyVIPName = "LBApplyVIP"
	// RemoveVIPName withdraws and deletes a VIP; removing an absent VIP is
	// not an error.
	RemoveVIPName = "LBRemoveVIP"
	// NodeReportName returns the node's counters, digests, health and BGP
	// state.
	NodeReportName = "LBNodeReport"
	// ProbeBackendName checks one backend from the node.
	ProbeBackendName = "LBProbeBackend"
	// ProbeVIPName runs a synthetic packet of a probe flow to the VIP
	// through the node's loaded program (BPF_PROG_TEST_RUN) and says where
	// the data plane sent it: verification that the node really balances
	// the VIP, not just that its maps hold the right bytes.
	ProbeVIPName = "LBProbeVIP"
)

// Signals the lbnode worker sends to workflows on metalflow's own queue.
const (
	// RegistryWorkflowName is the per-node workflow (ID RegistryWorkflowID)
	// an lbnode signals-with-start at start and on every heartbeat; it
	// records the node in metalflow's inventory.
	RegistryWorkflowName = "LBNodeRegistry"
	// SignalHeartbeat carries a NodeHeartbeat to the registry workflow.
	SignalHeartbeat = "lbnode-heartbeat"
	// SignalBackendHealth carries a BackendHealthChange to the VIP's
	// workflow (ID "vip/<name>") so that every node of every cluster
	// learns what one node saw.
	SignalBackendHealth = "backend-health"
	// QueryWantsNode asks a VIP's workflow whether the VIP belongs on a
	// node (WantsNodeInput); it answers a bool. A node asks it about the
	// VIPs it holds, at start and now and then, and removes those no
	// workflow wants there any more.
	QueryWantsNode = "wants-node"
)

// WantsNodeInput names the node QueryWantsNode asks about.
type WantsNodeInput struct {
	Cluster string `json:"cluster"`
	Node    string `json:"node"`
}

// RegistryWorkflowID is the registry workflow of one node.
func RegistryWorkflowID(cluster, node string) string { return "lbnode/" + cluster + "/" + node }

// VIPWorkflowID is the workflow that owns a VIP.
func VIPWorkflowID(name string) string { return "vip/" + name }

// Exposure says who may reach a VIP.
const (
	ExposureInternal = "internal"
	ExposurePublic   = "public"
)

// Announce says to which BGP peers a node announces a VIP's prefix.
const (
	// AnnounceNone keeps the VIP programmed but unannounced (canary
	// before verification, drained node).
	AnnounceNone = ""
	// AnnounceInternal announces to the internal (top-of-rack) peers only.
	AnnounceInternal = "internal"
	// AnnouncePublic announces to internal and external peers; only an
	// approved public VIP gets it.
	AnnouncePublic = "public"
)

// Backend states, as the data plane knows them.
const (
	BackendActive = "active"
	BackendDrain  = "drain"
)

// Backend is one real server behind a VIP.
type Backend struct {
	Address string `json:"address"`
	Weight  uint32 `json:"weight"`
	// State is BackendActive ("" means active) or BackendDrain: a
	// draining backend takes no new flows, established ones stay.
	State string `json:"state,omitempty"`
	// Serial names the metalflow server behind the address, if any.
	Serial string `json:"serial,omitempty"`
}

// HealthCheck is how nodes probe a VIP's backends.
type HealthCheck struct {
	// Kind is "tcp" (connect) or "http" (GET Path, 2xx/3xx is healthy).
	Kind string `json:"kind"`
	// Port defaults to the VIP's first port.
	Port uint16 `json:"port,omitempty"`
	Path string `json:"path,omitempty"`
	// IntervalMS and TimeoutMS default to 2000 and 1000.
	IntervalMS int `json:"intervalMs,omitempty"`
	TimeoutMS  int `json:"timeoutMs,omitempty"`
	// Fall failures in a row take a backend out; Rise successes bring it
	// back (defaults 3 and 2).
	Fall int `json:"fall,omitempty"`
	Rise int `json:"rise,omitempty"`
}

// VIPSpec is a VIP's whole desired state on one node.
type VIPSpec struct {
	Name     string `json:"name"`
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
	// Ports served; every port gets the same backends.
	Ports    []uint16  `json:"ports"`
	Backends []Backend `json:"backends"`
	// Announce is AnnounceNone, AnnounceInternal or AnnouncePublic.
	Announce    string       `json:"announce,omitempty"`
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
}

// Validate checks what a node could not program.
func (s VIPSpec) Validate() error {
	if s.Name == "" {
		return fmt.Errorf("VIP has no name")
	}
	a, err := netip.ParseAddr(s.Address)
	if err != nil || a.Zone() != "" || a.IsUnspecified() {
		return fmt.Errorf("VIP %s: address %q is not a usable IP address", s.Name, s.Address)
	}
	switch strings.ToLower(s.Protocol) {
	case "tcp", "udp":
	default:
		return fmt.Errorf("VIP %s: protocol %q, want tcp or udp", s.Name, s.Protocol)
	}
	if len(s.Ports) == 0 {
		return fmt.Errorf("VIP %s: no ports", s.Name)
	}
	switch s.Announce {
	case AnnounceNone, AnnounceInternal, AnnouncePublic:
	default:
		return fmt.Errorf("VIP %s: announce %q, want internal or public", s.Name, s.Announce)
	}
	seen := map[netip.Addr]bool{}
	for _, b := range s.Backends {
		ba, err := netip.ParseAddr(b.Address)
		if err != nil || ba.Zone() != "" || ba.IsUnspecified() {
			return fmt.Errorf("VIP %s: backend address %q is not a usable IP address", s.Name, b.Address)
		}
		if seen[ba] {
			return fmt.Errorf("VIP %s: backend %s listed twice", s.Name, ba)
		}
		seen[ba] = true
		switch b.State {
		case "", BackendActive, BackendDrain:
		default:
			return fmt.Errorf("VIP %s: backend %s state %q, want active or drain", s.Name, ba, b.State)
		}
	}
	if hc := s.HealthCheck; hc != nil && hc.Kind != "tcp" && hc.Kind != "http" {
		return fmt.Errorf("VIP %s: health check kind %q, want tcp or http", s.Name, hc.Kind)
	}
	return nil
}

// Digest fingerprints a spec independently of the order its ports and
// backends were listed in: a node reports the digest of what it runs, and
// the workflow compares it with the digest of what it asked for.
func Digest(s VIPSpec) string {
	c := s
	c.Protocol = strings.ToLower(c.Protocol)
	c.Ports = slices.Clone(s.Ports)
	slices.Sort(c.Ports)
	c.Backends = slices.Clone(s.Backends)
	for i := range c.Backends {
		if c.Backends[i].State == "" {
			c.Backends[i].State = BackendActive
		}
	}
	slices.SortFunc(c.Backends, func(a, b Backend) int { return strings.Compare(a.Address, b.Address) })
	raw, _ := json.Marshal(c) // a struct of plain fields always marshals
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8])
}

// ApplyVIPInput is the desired state of one VIP on one node.
type ApplyVIPInput struct {
	Spec VIPSpec `json:"spec"`
}

// ApplyVIPResult says what the node runs now.
type ApplyVIPResult struct {
	Node    string `json:"node"`
	Digest  string `json:"digest"`
	Changed bool   `json:"changed"`
	// Announced is what the node announces for the VIP after the apply.
	Announced string `json:"announced,omitempty"`
}

// RemoveVIPInput names the VIP to remove from a node.
type RemoveVIPInput struct {
	Name string `json:"name"`
}

// RemoveVIPResult says whether anything was there.
type RemoveVIPResult struct {
	Node    string `json:"node"`
	Removed bool   `json:"removed"`
}

// NodeReportInput optionally narrows the report to one VIP.
type NodeReportInput struct {
	VIP string `json:"vip,omitempty"`
}

// Counter is packets and bytes.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// BackendReport is one backend as a node sees it.
type BackendReport struct {
	Address string  `json:"address"`
	Counter Counter `json:"counter"`
	// Health is "up", "down" or "unknown" (no check configured yet).
	Health string `json:"health"`
}

// VIPReport is one VIP on one node.
type VIPReport struct {
	Name     string          `json:"name"`
	Address  string          `json:"address"`
	Digest   string          `json:"digest"`
	Counter  Counter         `json:"counter"`
	Backends []BackendReport `json:"backends,omitempty"`
	// Announced is AnnounceNone, AnnounceInternal or AnnouncePublic as
	// the node's BGP speaker has it, route actually in its RIB.
	Announced string `json:"announced,omitempty"`
}

// PeerReport is one BGP session.
type PeerReport struct {
	Address  string `json:"address"`
	External bool   `json:"external"`
	// State is the BGP FSM state, "established" when up.
	State string `json:"state"`
}

// NodeReport answers NodeReportName.
type NodeReport struct {
	Cluster       string `json:"cluster"`
	Node          string `json:"node"`
	FailureDomain string `json:"failureDomain,omitempty"`
	// Healthy is false when the data plane is not attached or not
	// forwarding; such a node withdraws its routes.
	Healthy bool         `json:"healthy"`
	VIPs    []VIPReport  `json:"vips"`
	Peers   []PeerReport `json:"peers,omitempty"`
	// Drops counts dropped packets by reason.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// ProbeBackendInput asks a node to check one backend now.
type ProbeBackendInput struct {
	Address string      `json:"address"`
	Check   HealthCheck `json:"check"`
}

// ProbeBackendResult is the outcome of one probe.
type ProbeBackendResult struct {
	Node      string `json:"node"`
	Healthy   bool   `json:"healthy"`
	Error     string `json:"error,omitempty"`
	LatencyMS int64  `json:"latencyMs"`
}

// ProbeVIPInput names the VIP and the probe flow's source.
type ProbeVIPInput struct {
	VIP string `json:"vip"`
	// SourceAddress and SourcePort make the probe flow; defaults are a
	// documentation address and a fixed port.
	SourceAddress string `json:"sourceAddress,omitempty"`
	SourcePort    uint16 `json:"sourcePort,omitempty"`
}

// ProbeVIPResult says what the data plane did with the probe packet.
type ProbeVIPResult struct {
	Node string `json:"node"`
	// Forwarded is true when the packet left encapsulated towards one of
	// the VIP's active backends.
	Forwarded bool `json:"forwarded"`
	// Backend is the backend the packet was sent to.
	Backend string `json:"backend,omitempty"`
	// Verdict is the XDP verdict ("tx", "pass", "drop", ...).
	Verdict string `json:"verdict"`
	// PacketsBefore and PacketsAfter are the VIP's packet counter around
	// the probe: the probe must move it.
	PacketsBefore uint64 `json:"packetsBefore"`
	PacketsAfter  uint64 `json:"packetsAfter"`
}

// NodeHeartbeat is what an lbnode tells metalflow about itself.
type NodeHeartbeat struct {
	Cluster       string `json:"cluster"`
	Node          string `json:"node"`
	FailureDomain string `json:"failureDomain"`
	// Capacity is how many VIPs the node takes.
	Capacity int `json:"capacity"`
	// VIPs is how many it runs now.
	VIPs    int       `json:"vips"`
	Healthy bool      `json:"healthy"`
	At      time.Time `json:"at"`
	// Stopping is set in the last heartbeat of a node shutting down.
	Stopping bool `json:"stopping,omitempty"`
}

// BackendHealthChange is one node's damped verdict on one backend.
type BackendHealthChange struct {
	VIP     string    `json:"vip"`
	Backend string    `json:"backend"`
	Healthy bool      `json:"healthy"`
	Cluster string    `json:"cluster"`
	Node    string    `json:"node"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// Package lbnode drives metalflow's XDP L4 load balancer: it loads the data
// plane into the kernel, attaches it to an interface, pins it so a restarted
// process re-adopts it without a gap in forwarding, and keeps each VIP's
// Maglev table in step with its backend list.
package lbnode

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Protocol is the L4 protocol of a VIP.
type Protocol uint8

// The protocols a VIP can serve, by IP protocol number.
const (
	ProtocolTCP Protocol = 6
	ProtocolUDP Protocol = 17
)

// ParseProtocol reads "tcp" or "udp".
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return ProtocolTCP, nil
	case "udp":
		return ProtocolUDP, nil
	}
	return 0, fmt.Errorf("protocol %q: want tcp or udp", s)
}

func (p Protocol) String() string {
	switch p {
	case ProtocolTCP:
		return "tcp"
	case ProtocolUDP:
		return "udp"
	}
	return fmt.Sprintf("proto-%d", uint8(p))
}

// VIPKey names a virtual service: address, port (0 = every port) and
// protocol.
type VIPKey struct {
	Addr     netip.Addr
	Port     uint16
	Protocol Protocol
}

func (k VIPKey) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.Addr, k.Port), k.Protocol)
}

func (k VIPKey) validate() error {
	if !k.Addr.IsValid() {
		return errors.New("VIP has no address")
	}
	if k.Addr.Zone() != "" {
		return fmt.Errorf("VIP %s: zoned addresses are not supported", k.Addr)
	}
	// No client sends to the unspecified address: such a VIP would sit in
	// the maps and never balance anything.
	if k.Addr.IsUnspecified() {
		return fmt.Errorf("VIP %s: the unspecified address is not a VIP", k.Addr)
	}
	if k.Protocol != ProtocolTCP && k.Protocol != ProtocolUDP {
		return fmt.Errorf("VIP %s: protocol must be tcp or udp", k.Addr)
	}
	return nil
}

// VIPFlags changes how a VIP hashes flows and whether it remembers them.
type VIPFlags uint32

const (
	// HashNoSourcePort leaves the client's port out of the hash, so all of
	// a client's connections reach one backend.
	HashNoSourcePort VIPFlags = 1 << 0
	// HashDestinationPortOnly hashes the destination port alone: every
	// client of one port reaches the same backend.
	HashDestinationPortOnly VIPFlags = 1 << 1
	// NoFlowTable turns the per-CPU LRU flow table off for the VIP: pure
	// Maglev, so a backend change moves the flows Maglev moves, and
	// draining does not protect established connections.
	NoFlowTable VIPFlags = 1 << 2
	// EncapGUE wraps packets in UDP (GUE variant 1: the inner IP packet
	// right after the UDP header) instead of IP-in-IP, for paths and NICs
	// that only spread or pass UDP well.
	EncapGUE VIPFlags = 1 << 3

	knownVIPFlags = HashNoSourcePort | HashDestinationPortOnly | NoFlowTable | EncapGUE
)

// VIP is a virtual service and its per-VIP options.
type VIP struct {
	VIPKey
	Flags VIPFlags
}

// BackendState is whether a backend takes new flows.
type BackendState string

const (
	// BackendActive takes new flows in proportion to its weight.
	BackendActive BackendState = "active"
	// BackendDrain takes no new flows; flows already in a node's flow
	// table keep reaching it until they end.
	BackendDrain BackendState = "drain"
)

// Backend is one real server behind a VIP. Weight 0 behaves like drain.
type Backend struct {
	Addr   netip.Addr
	Weight uint32
	State  BackendState
}

// maxWeight bounds weights so Maglev's credit arithmetic stays exact and a
// typo (an extra zero or three) is caught rather than starving everyone else.
const maxWeight = 1_000_000

func (b Backend) validate() error {
	if !b.Addr.IsValid() || b.Addr.IsUnspecified() {
		return fmt.Errorf("backend %q: not a usable address", b.Addr)
	}
	if b.Addr.Zone() != "" {
		return fmt.Errorf("backend %s: zoned addresses are not supported", b.Addr)
	}
	if b.Weight > maxWeight {
		return fmt.Errorf("backend %s: weight %d above %d", b.Addr, b.Weight, maxWeight)
	}
	switch b.State {
	case "", BackendActive, BackendDrain:
	default:
		return fmt.Errorf("backend %s: state %q, want active or drain", b.Addr, b.State)
	}
	return nil
}

// takesNewFlows says whether the backend belongs in the Maglev table.
func (b Backend) takesNewFlows() bool {
	return b.Weight > 0 && b.State != BackendDrain
}

// AttachMode is how the program is attached to the interface.
type AttachMode string

const (
	// AttachNative runs in the driver, before an skb exists: the fast path
	// for real NICs.
	AttachNative AttachMode = "native"
	// AttachGeneric runs after the skb is built; slower, works everywhere.
	// Tests on veth use it.
	AttachGeneric AttachMode = "generic"
	// AttachAuto tries native and falls back to generic with a log line;
	// the balancer takes generic on a veth, where native loses what it
	// sends back out.
	AttachAuto AttachMode = "auto"
)

// ParseAttachMode reads native, generic or auto.
func ParseAttachMode(s string) (AttachMode, error) {
	switch m := AttachMode(s); m {
	case AttachNative, AttachGeneric, AttachAuto:
		return m, nil
	}
	return "", fmt.Errorf("XDP mode %q: want native, generic or auto", s)
}

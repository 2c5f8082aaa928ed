package lbnode

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/metalflow/metalflow/bpf"
)

// DropReason says why the data plane dropped a packet.
type DropReason uint32

// Drop reasons; they mirror enum drop_reason in bpf/lb.h.
const (
	// DropFragment: an IP fragment to a VIP address (no ports to hash).
	DropFragment DropReason = iota
	// DropIPOptions: IPv4 options or IPv6 extension headers to a VIP address.
	DropIPOptions
	// DropNoBackend: the VIP has no backend taking new flows.
	DropNoBackend
	// DropTooBig: too big to encapsulate, and IPv4 without DF (no ICMP).
	DropTooBig
	// DropHeadroom: the frame could not be grown or shrunk.
	DropHeadroom
	// DropMalformed: to a VIP address, an IPv4 header with IHL under 5, or
	// TCP or UDP whose IP length, TCP data offset or UDP length does not fit
	// the packet or the frame.
	DropMalformed
	dropReasonCount
)

func (r DropReason) String() string {
	switch r {
	case DropFragment:
		return "fragment"
	case DropIPOptions:
		return "ip_options"
	case DropNoBackend:
		return "no_backend"
	case DropTooBig:
		return "too_big"
	case DropHeadroom:
		return "headroom"
	case DropMalformed:
		return "malformed"
	}
	return fmt.Sprintf("reason_%d", uint32(r))
}

// Mirrors enum lb_event in bpf/lb.h.
const (
	evLRUHit = iota
	evLRUMiss
	evSYNFloodBypass
	evICMPTooBig
	evDecapV4
	evDecapV6
	evDecapGUE
	evCount
)

// Counter is packets and bytes, summed over CPUs.
type Counter struct {
	Packets uint64
	Bytes   uint64
}

// Stats is a snapshot of the data plane's counters.
type Stats struct {
	VIPs     map[VIPKey]Counter
	Backends map[netip.Addr]Counter
	Drops    map[DropReason]Counter
	// FlowTableHits and FlowTableMisses count lookups in the LRU.
	FlowTableHits   uint64
	FlowTableMisses uint64
	// SYNFloodBypasses counts SYNs kept out of the flow table under flood.
	SYNFloodBypasses uint64
	// ICMPTooBig counts "fragmentation needed" / "packet too big" replies.
	ICMPTooBig uint64
}

func readCounter(m *ebpf.Map, idx uint32) (Counter, error) {
	var perCPU []bpf.LbCounter
	if err := m.Lookup(idx, &perCPU); err != nil {
		return Counter{}, err
	}
	var c Counter
	for _, p := range perCPU {
		c.Packets += p.Packets
		c.Bytes += p.Bytes
	}
	return c, nil
}

// Stats reads the counters.
func (n *Node) Stats() (Stats, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := Stats{VIPs: map[VIPKey]Counter{}, Backends: map[netip.Addr]Counter{}, Drops: map[DropReason]Counter{}}
	for k, st := range n.vips {
		c, err := readCounter(n.objs.VipStats, st.num)
		if err != nil {
			return s, fmt.Errorf("VIP %s counters: %w", k, err)
		}
		s.VIPs[k] = c
	}
	for a, slot := range n.backends {
		c, err := readCounter(n.objs.BackendStats, slot.index)
		if err != nil {
			return s, fmt.Errorf("backend %s counters: %w", a, err)
		}
		s.Backends[a] = c
	}
	// A data plane pinned by an older build (--stats during an upgrade)
	// has fewer reasons; it never counted the newer ones.
	for r := DropReason(0); r < dropReasonCount && uint32(r) < n.objs.DropStats.MaxEntries(); r++ {
		c, err := readCounter(n.objs.DropStats, uint32(r))
		if err != nil {
			return s, fmt.Errorf("drop counters: %w", err)
		}
		if c.Packets > 0 {
			s.Drops[r] = c
		}
	}
	events := make([]Counter, evCount)
	for e := range events {
		c, err := readCounter(n.objs.EventStats, uint32(e))
		if err != nil {
			return s, fmt.Errorf("event counters: %w", err)
		}
		events[e] = c
	}
	s.FlowTableHits = events[evLRUHit].Packets
	s.FlowTableMisses = events[evLRUMiss].Packets
	s.SYNFloodBypasses = events[evSYNFloodBypass].Packets
	s.ICMPTooBig = events[evICMPTooBig].Packets
	return s, nil
}

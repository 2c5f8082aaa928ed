package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// The probe flow's defaults: documentation addresses (RFC 5737, RFC 3849)
// that no real client has, and a fixed port so repeated probes are one flow.
const (
	DefaultProbeSourceV4 = "192.0.2.1"
	DefaultProbeSourceV6 = "2001:db8::1"
	DefaultProbeSrcPort  = 40000
	// probePortAll is the destination port of a probe to a VIP that serves
	// every port (port 0).
	probePortAll = 80
)

// Frame layout constants for the probe packet and the encapsulated answer.
const (
	ethHeaderLen = 14
	ethTypeIPv4  = 0x0800
	ethTypeIPv6  = 0x86dd
	ipProtoIPIP  = 4
	ipProtoTCP   = 6
	ipProtoUDP   = 17
	ipProtoIPv6  = 41
	tcpFlagSYN   = 0x02
	// probeHeadroom is room for the outer headers the balancer prepends.
	probeHeadroom = 256
)

// xdpVerdicts names the XDP return codes.
func xdpVerdict(v uint32) string {
	switch v {
	case 0:
		return "aborted"
	case 1:
		return "drop"
	case 2:
		return "pass"
	case 3:
		return "tx"
	case 4:
		return "redirect"
	}
	return fmt.Sprintf("verdict-%d", v)
}

// ProbeVIP runs one packet of a probe flow to the VIP through the node's
// loaded balancer program (BPF_PROG_TEST_RUN) and says where it went: proof
// that this node really balances the VIP, which a canary needs before it is
// announced.
func (a *Agent) ProbeVIP(ctx context.Context, in lbapi.ProbeVIPInput) (lbapi.ProbeVIPResult, error) {
	res := lbapi.ProbeVIPResult{Node: a.cfg.NodeName}
	a.mu.Lock()
	rec, ok := a.vips[in.VIP]
	a.mu.Unlock()
	if !ok {
		err := fmt.Errorf("node %s does not run VIP %q", a.cfg.NodeName, in.VIP)
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrUnknownVIP, err)
	}
	p, err := planOf(rec.Spec)
	if err != nil {
		return res, invalid(err)
	}
	key := p.keys[0]
	src, err := probeSource(in.SourceAddress, key.Addr)
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrInvalidProbe, err)
	}
	sport := in.SourcePort
	if sport == 0 {
		sport = DefaultProbeSrcPort
	}
	dport := key.Port
	if dport == 0 {
		dport = probePortAll
	}
	frame := probeFrame(src, key.Addr, key.Protocol, sport, dport)

	if res.PacketsBefore, err = vipKeyCounter(a.node, key); err != nil {
		return res, fmt.Errorf("reading VIP %s's counter: %w", in.VIP, err)
	}
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+probeHeadroom)}
	verdict, err := a.node.Program().Run(&opts)
	if err != nil {
		return res, fmt.Errorf("running the probe through the balancer: %w", err)
	}
	res.Verdict = xdpVerdict(verdict)
	if res.PacketsAfter, err = vipKeyCounter(a.node, key); err != nil {
		return res, fmt.Errorf("reading VIP %s's counter: %w", in.VIP, err)
	}
	if verdict != 3 {
		return res, nil
	}
	dst, ok := encapDestination(opts.DataOut)
	if !ok {
		return res, nil
	}
	res.Backend = dst.String()
	for _, b := range p.backends {
		if b.Addr == dst && b.State != lbnode.BackendDrain && b.Weight > 0 {
			res.Forwarded = true
		}
	}
	return res, nil
}

func probeSource(s string, vip netip.Addr) (netip.Addr, error) {
	if s == "" {
		s = DefaultProbeSourceV4
		if vip.Is6() {
			s = DefaultProbeSourceV6
		}
	}
	src, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("probe source %q is not an IP address", s)
	}
	src = src.Unmap()
	if src.Is4() != vip.Is4() {
		return netip.Addr{}, fmt.Errorf("probe source %s and VIP %s are of different IP versions", src, vip)
	}
	return src, nil
}

// probeFrame is an Ethernet frame carrying a TCP SYN, or a small UDP
// datagram, from src:sport to dst:dport.
func probeFrame(src, dst netip.Addr, proto lbnode.Protocol, sport, dport uint16) []byte {
	var l4 []byte
	l4proto := uint8(ipProtoTCP)
	if proto == lbnode.ProtocolUDP {
		l4proto = ipProtoUDP
		l4 = make([]byte, 8+16)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], "metalflow probe\n")
	} else {
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint32(l4[4:], 1)
		l4[12] = 5 << 4
		l4[13] = tcpFlagSYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
	}
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)

	// Pseudo-header sum for the L4 checksum.
	var sum uint32
	s, d := src.AsSlice(), dst.AsSlice()
	sum = addWords(sum, s)
	sum = addWords(sum, d)
	sum += uint32(l4proto) + uint32(len(l4))
	csumAt := 16
	if l4proto == ipProtoUDP {
		csumAt = 6
	}
	binary.BigEndian.PutUint16(l4[csumAt:], fold(addWords(sum, l4)))

	var ip []byte
	ethType := uint16(ethTypeIPv4)
	if src.Is4() {
		ip = make([]byte, 20, 20+len(l4))
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = 64
		ip[9] = l4proto
		copy(ip[12:16], s)
		copy(ip[16:20], d)
		binary.BigEndian.PutUint16(ip[10:], fold(addWords(0, ip)))
	} else {
		ethType = ethTypeIPv6
		ip = make([]byte, 40, 40+len(l4))
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6] = l4proto
		ip[7] = 64
		copy(ip[8:24], s)
		copy(ip[24:40], d)
	}
	frame := make([]byte, ethHeaderLen, ethHeaderLen+len(ip)+len(l4))
	// Locally administered MACs: the balancer rewrites them anyway.
	copy(frame[0:6], []byte{0x02, 0, 0, 0, 0, 0x01})
	copy(frame[6:12], []byte{0x02, 0, 0, 0, 0, 0x02})
	binary.BigEndian.PutUint16(frame[12:], ethType)
	frame = append(frame, ip...)
	return append(frame, l4...)
}

func addWords(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

// fold finishes an RFC 1071 checksum.
func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// encapDestination reads the outer destination of a frame the balancer
// encapsulated (IP-in-IP, IPv6-in-IP or GUE over UDP); ok is false for
// anything else.
func encapDestination(frame []byte) (netip.Addr, bool) {
	if len(frame) < ethHeaderLen {
		return netip.Addr{}, false
	}
	ip := frame[ethHeaderLen:]
	encap := func(next uint8) bool {
		return next == ipProtoIPIP || next == ipProtoIPv6 || next == ipProtoUDP
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case ethTypeIPv4:
		if len(ip) < 20 || ip[0]>>4 != 4 || !encap(ip[9]) {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4([4]byte(ip[16:20])), true
	case ethTypeIPv6:
		if len(ip) < 40 || ip[0]>>4 != 6 || !encap(ip[6]) {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16([16]byte(ip[24:40])), true
	}
	return netip.Addr{}, false
}

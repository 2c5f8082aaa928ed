package lbnode

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/bpf"
)

// The fixture clients.
func client4() netip.Addr { return addr("192.0.2.1") }
func client6() netip.Addr { return addr("2001:db8:c::1") }

func backendsAt(addrs ...string) []Backend {
	var bs []Backend
	for _, a := range addrs {
		bs = append(bs, Backend{Addr: addr(a), Weight: 100})
	}
	return bs
}

func tcpVIP(a string, port uint16, flags VIPFlags) VIP {
	return VIP{VIPKey: VIPKey{Addr: addr(a), Port: port, Protocol: ProtocolTCP}, Flags: flags}
}

func udpVIP(a string, port uint16, flags VIPFlags) VIP {
	return VIP{VIPKey: VIPKey{Addr: addr(a), Port: port, Protocol: ProtocolUDP}, Flags: flags}
}

// fixtureServices is the configuration every packet fixture runs against.
func fixtureServices() map[string]service {
	return map[string]service{
		"v4tcp":     {tcpVIP("10.200.0.10", 80, 0), backendsAt("10.0.1.11", "10.0.1.12", "10.0.1.13")},
		"v4udpAll":  {udpVIP("10.200.0.10", 0, 0), backendsAt("fc00:1::11", "fc00:1::12")},
		"v4tcpAll":  {tcpVIP("10.200.0.11", 0, 0), backendsAt("10.0.1.11", "10.0.1.12")},
		"v6tcp":     {tcpVIP("2001:db8::10", 443, 0), backendsAt("fc00:1::21", "fc00:1::22")},
		"v6udp":     {udpVIP("2001:db8::10", 53, 0), backendsAt("10.0.1.31", "10.0.1.32")},
		"v6udpAll":  {udpVIP("2001:db8::11", 0, 0), backendsAt("fc00:1::21")},
		"noSrcPort": {tcpVIP("10.200.0.20", 80, HashNoSourcePort), backendsAt("10.0.1.11", "10.0.1.12", "10.0.1.13")},
		"dportOnly": {tcpVIP("10.200.0.21", 80, HashDestinationPortOnly), backendsAt("10.0.1.11", "10.0.1.12", "10.0.1.13")},
		"empty":     {tcpVIP("10.200.0.30", 80, 0), nil},
		"emptyV6":   {tcpVIP("2001:db8::30", 80, 0), []Backend{}},
		"weighted":  {tcpVIP("10.200.0.40", 80, 0), []Backend{{Addr: addr("10.0.1.41"), Weight: 1}, {Addr: addr("10.0.1.42"), Weight: 3}}},
		"gue4":      {tcpVIP("10.200.0.60", 80, EncapGUE), backendsAt("10.0.1.61", "10.0.1.62")},
		"gue6":      {tcpVIP("2001:db8::60", 443, EncapGUE), backendsAt("fc00:1::61", "fc00:1::62")},
		"gueMixed":  {udpVIP("10.200.0.61", 0, EncapGUE|NoFlowTable), backendsAt("fc00:1::63")},
	}
}

type packetCase struct {
	name    string
	in      []byte
	verdict uint32
	// want is the expected output frame; nil means "the input, unchanged".
	want func(t *testing.T, in []byte) []byte
	// drop is the drop counter an XDP_DROP must move (and only it); other
	// verdicts must move none.
	drop DropReason
}

// noDrop fills the drop field of fixtures that are not dropped.
const noDrop = DropReason(^uint32(0))

func tcp4(src, dst netip.Addr, sport, dport uint16, flags byte, o v4opts, payload int) []byte {
	m := macs()
	return ether(m.node, m.router, ethIPv4, ipv4Packet(src, dst, protoTCP, o, tcpSegment(sport, dport, flags, payloadOf(payload))))
}

func udp4(src, dst netip.Addr, sport, dport uint16, o v4opts, payload int) []byte {
	m := macs()
	return ether(m.node, m.router, ethIPv4, ipv4Packet(src, dst, protoUDP, o, udpDatagram(sport, dport, payloadOf(payload))))
}

func tcp6(src, dst netip.Addr, sport, dport uint16, flags byte, tc uint8, payload int) []byte {
	m := macs()
	return ether(m.node, m.router, ethIPv6, ipv6Packet(src, dst, protoTCP, tc, tcpSegment(sport, dport, flags, payloadOf(payload))))
}

func udp6(src, dst netip.Addr, sport, dport uint16, payload int) []byte {
	m := macs()
	return ether(m.node, m.router, ethIPv6, ipv6Packet(src, dst, protoUDP, 0, udpDatagram(sport, dport, payloadOf(payload))))
}

// toBackend expects the frame encapsulated to the backend the service's
// Maglev table gives the flow.
func toBackend(svc string) func(t *testing.T, in []byte) []byte {
	return func(t *testing.T, in []byte) []byte {
		s := fixtureServices()[svc]
		f := tupleOf(t, in)
		return encapsulatedWith(in, expectBackend(t, s, f), f, s.vip.Flags&EncapGUE != 0)
	}
}

func icmpTooBig(mtu int) func(t *testing.T, in []byte) []byte {
	return func(t *testing.T, in []byte) []byte {
		if binary.BigEndian.Uint16(in[12:]) == ethIPv4 {
			return fragNeeded(in, mtu)
		}
		return packetTooBig(in, mtu)
	}
}

// tupleOf reads the 5-tuple back out of a fixture frame.
func tupleOf(t *testing.T, in []byte) flowTuple {
	var f flowTuple
	var l4 []byte
	if binary.BigEndian.Uint16(in[12:]) == ethIPv4 {
		ip := in[14:]
		f.Src = netip.AddrFrom4([4]byte(ip[12:16]))
		f.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
		f.Protocol = Protocol(ip[9])
		l4 = ip[20:]
	} else {
		ip := in[14:]
		f.Src = netip.AddrFrom16([16]byte(ip[8:24]))
		f.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
		f.Protocol = Protocol(ip[6])
		l4 = ip[40:]
	}
	require.GreaterOrEqual(t, len(l4), 4)
	f.SPort = binary.BigEndian.Uint16(l4[0:])
	f.DPort = binary.BigEndian.Uint16(l4[2:])
	return f
}

func balancerCases() []packetCase {
	m := macs()
	vip4, vip6 := addr("10.200.0.10"), addr("2001:db8::10")
	other4, other6 := addr("10.200.0.99"), addr("2001:db8::99")
	df := v4opts{df: true}
	arp := ether(broadcastMAC(), m.router, ethARP, make([]byte, 28))
	vlan := ether(m.node, m.router, ethVLAN, append([]byte{0, 10, 0x08, 0x00}, tcp4(client4(), vip4, 1000, 80, tcpSYN, df, 0)[14:]...))
	icmpEcho4 := ether(m.node, m.router, ethIPv4, ipv4Packet(client4(), vip4, protoICMP, df, []byte{8, 0, 0, 0, 0, 1, 0, 1}))
	icmpEcho6 := ether(m.node, m.router, ethIPv6, ipv6Packet(client6(), vip6, protoICMPv6, 0, []byte{128, 0, 0, 0, 0, 1, 0, 1}))
	frag6 := func(dst netip.Addr) []byte {
		fh := []byte{protoTCP, 0, 0, 1, 0, 0, 0, 42}
		return ether(m.node, m.router, ethIPv6, ipv6Packet(client6(), dst, protoFrag6, 0, append(fh, tcpSegment(1000, 443, tcpACK, nil)...)))
	}
	ext6 := func(dst netip.Addr, kind uint8) []byte {
		opt := []byte{protoTCP, 0, 1, 4, 0, 0, 0, 0}
		return ether(m.node, m.router, ethIPv6, ipv6Packet(client6(), dst, kind, 0, append(opt, tcpSegment(1000, 443, tcpACK, nil)...)))
	}
	truncated := tcp4(client4(), vip4, 1000, 80, tcpACK, df, 0)
	truncated = truncated[:14+20+10]
	binary.BigEndian.PutUint16(truncated[16:], 30)

	return append([]packetCase{
		{"ipv4 tcp syn to vip, ipv4 backend", tcp4(client4(), vip4, 40000, 80, tcpSYN, df, 0), xdpTX, toBackend("v4tcp"), noDrop},
		{"ipv4 tcp ack with data to vip", tcp4(client4(), vip4, 40000, 80, tcpACK, df, 200), xdpTX, toBackend("v4tcp"), noDrop},
		{"ipv4 tcp other client port", tcp4(client4(), vip4, 40001, 80, tcpACK, df, 10), xdpTX, toBackend("v4tcp"), noDrop},
		{"ipv4 tcp other client", tcp4(addr("198.51.100.7"), vip4, 40000, 80, tcpACK, df, 10), xdpTX, toBackend("v4tcp"), noDrop},
		{"ipv4 tos is copied to the outer header", tcp4(client4(), vip4, 40002, 80, tcpACK, v4opts{df: true, tos: 0xb8}, 10), xdpTX, toBackend("v4tcp"), noDrop},
		{"ipv4 without DF that fits", tcp4(client4(), vip4, 40003, 80, tcpACK, v4opts{}, 100), xdpTX, toBackend("v4tcp"), noDrop},
		{"ipv4 udp to all-ports vip, ipv6 backend (4in6)", udp4(client4(), vip4, 5000, 5353, df, 30), xdpTX, toBackend("v4udpAll"), noDrop},
		{"ipv4 udp to all-ports vip, another port", udp4(client4(), vip4, 5000, 9999, df, 30), xdpTX, toBackend("v4udpAll"), noDrop},
		{"ipv4 udp to port 80 falls to all-ports vip", udp4(client4(), vip4, 5001, 80, df, 30), xdpTX, toBackend("v4udpAll"), noDrop},
		{"ipv4 tcp to all-ports tcp vip", tcp4(client4(), addr("10.200.0.11"), 41000, 22, tcpSYN, df, 0), xdpTX, toBackend("v4tcpAll"), noDrop},
		{"ipv4 tcp to all-ports tcp vip, high port", tcp4(client4(), addr("10.200.0.11"), 41000, 65535, tcpACK, df, 0), xdpTX, toBackend("v4tcpAll"), noDrop},
		{"ipv6 tcp to vip, ipv6 backend (6in6)", tcp6(client6(), vip6, 50000, 443, tcpSYN, 0, 0), xdpTX, toBackend("v6tcp"), noDrop},
		{"ipv6 tcp with traffic class", tcp6(client6(), vip6, 50001, 443, tcpACK, 0x28, 64), xdpTX, toBackend("v6tcp"), noDrop},
		{"ipv6 udp to vip, ipv4 backend (6in4)", udp6(client6(), vip6, 5300, 53, 40), xdpTX, toBackend("v6udp"), noDrop},
		{"ipv6 udp to all-ports vip", udp6(client6(), addr("2001:db8::11"), 5300, 4789, 40), xdpTX, toBackend("v6udpAll"), noDrop},
		{"ipv4 tcp to vip address, unserved port", tcp4(client4(), vip4, 40000, 81, tcpSYN, df, 0), xdpPass, nil, noDrop},
		{"ipv4 tcp to unknown address", tcp4(client4(), other4, 40000, 80, tcpSYN, df, 0), xdpPass, nil, noDrop},
		{"ipv6 tcp to vip address, unserved port", tcp6(client6(), vip6, 50000, 80, tcpSYN, 0, 0), xdpPass, nil, noDrop},
		{"ipv6 tcp to unknown address", tcp6(client6(), other6, 50000, 443, tcpSYN, 0, 0), xdpPass, nil, noDrop},
		{"arp", arp, xdpPass, nil, noDrop},
		{"icmp echo to vip address", icmpEcho4, xdpPass, nil, noDrop},
		{"icmpv6 echo to vip address", icmpEcho6, xdpPass, nil, noDrop},
		{"vlan tagged frame", vlan, xdpPass, nil, noDrop},
		{"ethernet header without ip header", ether(m.node, m.router, ethIPv4, nil), xdpPass, nil, noDrop},
		{"truncated tcp header to vip", truncated, xdpDrop, nil, DropMalformed},
		{"ipv4 first fragment to vip", tcp4(client4(), vip4, 40000, 80, tcpACK, v4opts{mf: true}, 100), xdpDrop, nil, DropFragment},
		{"ipv4 later fragment to vip", udp4(client4(), vip4, 40000, 80, v4opts{fragOff: 185}, 100), xdpDrop, nil, DropFragment},
		{"ipv4 fragment to other host", tcp4(client4(), other4, 40000, 80, tcpACK, v4opts{mf: true}, 100), xdpPass, nil, noDrop},
		{"ipv4 options to vip", tcp4(client4(), vip4, 40000, 80, tcpACK, v4opts{options: []byte{1, 1, 1, 0}}, 0), xdpDrop, nil, DropIPOptions},
		{"ipv4 options to other host", tcp4(client4(), other4, 40000, 80, tcpACK, v4opts{options: []byte{1, 1, 1, 0}}, 0), xdpPass, nil, noDrop},
		{"ipv6 fragment header to vip", frag6(vip6), xdpDrop, nil, DropFragment},
		{"ipv6 fragment header to other host", frag6(other6), xdpPass, nil, noDrop},
		{"ipv6 hop-by-hop options to vip", ext6(vip6, protoHop6), xdpDrop, nil, DropIPOptions},
		{"ipv6 destination options to other host", ext6(other6, protoDst6), xdpPass, nil, noDrop},
		{"ipv4 exactly at mtu after encap", tcp4(client4(), vip4, 40010, 80, tcpACK, df, testMTU-20-40), xdpTX, toBackend("v4tcp"), noDrop},
		{"ipv4 too big with DF: frag needed", tcp4(client4(), vip4, 40011, 80, tcpACK, df, testMTU-20-40+1), xdpTX, icmpTooBig(testMTU - 20), noDrop},
		{"ipv4 too big without DF: dropped", tcp4(client4(), vip4, 40012, 80, tcpACK, v4opts{}, testMTU-20-40+1), xdpDrop, nil, DropTooBig},
		{"ipv4 to ipv6 backend too big: frag needed", udp4(client4(), vip4, 5000, 7000, df, testMTU-40-28+1), xdpTX, icmpTooBig(testMTU - 40), noDrop},
		{"ipv4 to ipv6 backend exactly at mtu", udp4(client4(), vip4, 5000, 7000, df, testMTU-40-28), xdpTX, toBackend("v4udpAll"), noDrop},
		{"ipv6 exactly at mtu after encap", tcp6(client6(), vip6, 50010, 443, tcpACK, 0, testMTU-40-40-20), xdpTX, toBackend("v6tcp"), noDrop},
		{"ipv6 too big: packet too big", tcp6(client6(), vip6, 50011, 443, tcpACK, 0, testMTU-40-40-20+1), xdpTX, icmpTooBig(testMTU - 40), noDrop},
		{"ipv6 to ipv4 backend too big: packet too big", udp6(client6(), vip6, 5300, 53, testMTU-20-48+1), xdpTX, icmpTooBig(testMTU - 20), noDrop},
		{"vip without backends set", tcp4(client4(), addr("10.200.0.30"), 40000, 80, tcpSYN, df, 0), xdpDrop, nil, DropNoBackend},
		{"ipv6 vip with an empty backend list", tcp6(client6(), addr("2001:db8::30"), 50000, 80, tcpSYN, 0, 0), xdpDrop, nil, DropNoBackend},
		{"no-source-port vip", tcp4(client4(), addr("10.200.0.20"), 1000, 80, tcpACK, df, 0), xdpTX, toBackend("noSrcPort"), noDrop},
		{"no-source-port vip, other port", tcp4(client4(), addr("10.200.0.20"), 2000, 80, tcpACK, df, 0), xdpTX, toBackend("noSrcPort"), noDrop},
		{"destination-port-only vip", tcp4(client4(), addr("10.200.0.21"), 1000, 80, tcpACK, df, 0), xdpTX, toBackend("dportOnly"), noDrop},
		{"destination-port-only vip, other client", tcp4(addr("198.51.100.9"), addr("10.200.0.21"), 3000, 80, tcpACK, df, 0), xdpTX, toBackend("dportOnly"), noDrop},
		{"weighted vip", tcp4(client4(), addr("10.200.0.40"), 1000, 80, tcpSYN, df, 0), xdpTX, toBackend("weighted"), noDrop},
		{"gue: ipv4 in udp over ipv4", tcp4(client4(), addr("10.200.0.60"), 40000, 80, tcpSYN, df, 0), xdpTX, toBackend("gue4"), noDrop},
		{"gue: ipv4 with data", tcp4(client4(), addr("10.200.0.60"), 40001, 80, tcpACK, df, 300), xdpTX, toBackend("gue4"), noDrop},
		{"gue: ipv6 in udp over ipv6", tcp6(client6(), addr("2001:db8::60"), 50000, 443, tcpACK, 0x10, 20), xdpTX, toBackend("gue6"), noDrop},
		{"gue: ipv4 udp in udp over ipv6", udp4(client4(), addr("10.200.0.61"), 5000, 4000, df, 64), xdpTX, toBackend("gueMixed"), noDrop},
		{"gue: exactly at mtu", tcp4(client4(), addr("10.200.0.60"), 40002, 80, tcpACK, df, testMTU-20-8-40), xdpTX, toBackend("gue4"), noDrop},
		{"gue: too big counts the udp header", tcp4(client4(), addr("10.200.0.60"), 40003, 80, tcpACK, df, testMTU-20-8-40+1), xdpTX, icmpTooBig(testMTU - 28), noDrop},
		{"gue: ipv6 too big", tcp6(client6(), addr("2001:db8::60"), 50001, 443, tcpACK, 0, testMTU-40-8-60+1), xdpTX, icmpTooBig(testMTU - 48), noDrop},
	}, malformedCases()...)
}

// malformedCases are TCP and UDP packets whose header sizes and lengths do
// not add up: dropped and counted when their destination carries a VIP
// (whatever the port), left to the stack otherwise.
func malformedCases() []packetCase {
	m := macs()
	vip4, vip6 := addr("10.200.0.10"), addr("2001:db8::10")
	other4, other6 := addr("10.200.0.99"), addr("2001:db8::99")
	df := v4opts{df: true}
	tcp4v := tcp4(client4(), vip4, 40020, 80, tcpACK, df, 10) // 30 bytes of TCP
	udp4v := udp4(client4(), vip4, 5020, 5353, df, 10)        // 18 bytes of UDP
	tcp6v := tcp6(client6(), vip6, 50020, 443, tcpACK, 0, 10)
	udp6v := udp6(client6(), vip6, 5320, 53, 10)
	// A bare TCP header followed by Ethernet padding the IP length leaves out.
	padded4 := append(tcp4(client4(), vip4, 40021, 80, tcpACK, df, 0), make([]byte, 12)...)
	icmpEcho4 := ether(m.node, m.router, ethIPv4, ipv4Packet(client4(), vip4, protoICMP, df, []byte{8, 0, 0, 0, 0, 1, 0, 1}))
	bad := func(name string, in []byte) packetCase {
		return packetCase{"malformed: " + name, in, xdpDrop, nil, DropMalformed}
	}
	passed := func(name string, in []byte) packetCase {
		return packetCase{"malformed: " + name, in, xdpPass, nil, noDrop}
	}
	return []packetCase{
		bad("ipv4 ihl 4", edited(tcp4v, setIHL(4))),
		bad("ipv4 ihl 0, udp", edited(udp4v, setIHL(0))),
		passed("ipv4 ihl 4 to other host", edited(tcp4(client4(), other4, 40020, 80, tcpACK, df, 10), setIHL(4))),
		bad("ipv4 total length shorter than the ip header", edited(tcp4v, setTotalLength(19))),
		bad("ipv4 total length shorter than ip + tcp headers", edited(tcp4v, setTotalLength(39))),
		bad("ipv4 total length shorter than ip + udp headers", edited(udp4v, setTotalLength(27))),
		bad("ipv4 total length one past the frame", edited(tcp4v, setTotalLength(20+30+1))),
		bad("ipv4 total length 65535", edited(udp4v, setTotalLength(65535))),
		passed("ipv4 total length past the frame to other host", edited(tcp4(client4(), other4, 40020, 80, tcpACK, df, 10), setTotalLength(100))),
		passed("icmp with a bad total length to vip is the stack's", edited(icmpEcho4, setTotalLength(200))),
		bad("ipv4 ihl 4, icmp", edited(icmpEcho4, setIHL(4))),
		bad("tcp data offset 4", edited(tcp4v, setDataOffset(4))),
		bad("tcp data offset 0", edited(tcp4v, setDataOffset(0))),
		bad("tcp data offset one word past the ip payload", edited(tcp4v, setDataOffset(8))),
		bad("tcp data offset 15", edited(tcp4v, setDataOffset(15))),
		bad("tcp header runs into ethernet padding", edited(padded4, setDataOffset(6))),
		bad("tcp data offset 4 to vip address, unserved port", edited(tcp4(client4(), vip4, 40020, 81, tcpACK, df, 10), setDataOffset(4))),
		passed("tcp data offset 4 to other host", edited(tcp4(client4(), other4, 40020, 80, tcpACK, df, 10), setDataOffset(4))),
		{"tcp options filling the ip payload exactly", edited(tcp4(client4(), vip4, 40022, 80, tcpACK, df, 12), setDataOffset(8)), xdpTX, toBackend("v4tcp"), noDrop},
		bad("udp length 7", edited(udp4v, setUDPLength(7))),
		bad("udp length 0", edited(udp4v, setUDPLength(0))),
		bad("udp length one past the ip payload", edited(udp4v, setUDPLength(19))),
		passed("udp length past the ip payload to other host", edited(udp4(client4(), other4, 5020, 5353, df, 10), setUDPLength(19))),
		// The receiver trims to the UDP length, as Linux does.
		{"udp length short of the ip payload", edited(udp4v, setUDPLength(8)), xdpTX, toBackend("v4udpAll"), noDrop},
		{"udp without payload", udp4(client4(), vip4, 5021, 5353, df, 0), xdpTX, toBackend("v4udpAll"), noDrop},
		{"ethernet padding is not forwarded", append(tcp4(client4(), vip4, 40023, 80, tcpACK, df, 0), make([]byte, 12)...), xdpTX, unpadded(12, "v4tcp"), noDrop},
		{"ipv6: bytes past the payload length are not forwarded", append(udp6(client6(), vip6, 5321, 53, 10), payloadOf(30)...), xdpTX, unpadded(30, "v6udp"), noDrop},
		bad("ipv6 payload length one past the frame", edited(tcp6v, setPayloadLength(30+1))),
		bad("ipv6 payload length 0 with tcp (no jumbo header)", edited(tcp6v, setPayloadLength(0))),
		bad("ipv6 payload length shorter than the tcp header", edited(tcp6v, setPayloadLength(19))),
		bad("ipv6 payload length shorter than the udp header", edited(udp6v, setPayloadLength(7))),
		passed("ipv6 payload length past the frame to other host", edited(tcp6(client6(), other6, 50020, 443, tcpACK, 0, 10), setPayloadLength(31))),
		bad("ipv6 tcp data offset 4", edited(tcp6v, setDataOffset(4))),
		bad("ipv6 tcp data offset past the payload", edited(tcp6v, setDataOffset(15))),
		bad("ipv6 udp length 0", edited(udp6v, setUDPLength(0))),
		bad("ipv6 udp length one past the payload", edited(udp6v, setUDPLength(19))),
		{"ipv6 tcp options filling the payload exactly", edited(tcp6(client6(), vip6, 50021, 443, tcpACK, 0, 40), setDataOffset(15)), xdpTX, toBackend("v6tcp"), noDrop},
	}
}

// unpadded expects the frame without its last pad bytes, encapsulated to
// the service's backend.
func unpadded(pad int, svc string) func(t *testing.T, in []byte) []byte {
	return func(t *testing.T, in []byte) []byte { return toBackend(svc)(t, in[:len(in)-pad]) }
}

// edited returns a copy of frame with f applied to its IP packet. An IPv4
// header checksum is recomputed, so only the field under test is wrong.
func edited(frame []byte, f func(ip []byte)) []byte {
	b := bytes.Clone(frame)
	ip := b[14:]
	f(ip)
	if binary.BigEndian.Uint16(b[12:]) == ethIPv4 {
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], inetChecksum(ip[:20], 0))
	}
	return b
}

// l4Offset is where the TCP or UDP header of a fixture packet starts.
func l4Offset(ip []byte) int {
	if ip[0]>>4 == 4 {
		return 20
	}
	return 40
}

func setIHL(words byte) func([]byte) { return func(ip []byte) { ip[0] = 0x40 | words } }

func setTotalLength(n uint16) func([]byte) {
	return func(ip []byte) { binary.BigEndian.PutUint16(ip[2:], n) }
}

func setPayloadLength(n uint16) func([]byte) {
	return func(ip []byte) { binary.BigEndian.PutUint16(ip[4:], n) }
}

func setDataOffset(words byte) func([]byte) {
	return func(ip []byte) {
		l4 := ip[l4Offset(ip):]
		l4[12] = words<<4 | l4[12]&0xf
	}
}

func setUDPLength(n uint16) func([]byte) {
	return func(ip []byte) { binary.BigEndian.PutUint16(ip[l4Offset(ip)+4:], n) }
}

// dropCounts reads the packets counted under each drop reason.
func dropCounts(t testing.TB, n *Node) []uint64 {
	t.Helper()
	counts := make([]uint64, dropReasonCount)
	for r := range counts {
		c, err := readCounter(n.objs.DropStats, uint32(r))
		require.NoError(t, err)
		counts[r] = c.Packets
	}
	return counts
}

func broadcastMAC() []byte { return []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }

func TestBalancerPacketFixtures(t *testing.T) {
	n := openTestNode(t, Config{})
	for _, s := range fixtureServices() {
		setup(t, n, []service{s})
	}
	cases := balancerCases()
	require.GreaterOrEqual(t, len(cases)+len(decapCases()), 40)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := dropCounts(t, n)
			verdict, out := run(t, n.Program(), tc.in)
			require.Equal(t, tc.verdict, verdict, "verdict")
			moved := map[DropReason]uint64{}
			for r, c := range dropCounts(t, n) {
				if c != before[r] {
					moved[DropReason(r)] = c - before[r]
				}
			}
			if tc.verdict == xdpDrop {
				assert.Equal(t, map[DropReason]uint64{tc.drop: 1}, moved, "drop counters moved")
			} else {
				assert.Empty(t, moved, "drop counters moved")
			}
			want := tc.in
			if tc.want != nil {
				want = tc.want(t, tc.in)
			}
			if tc.verdict == xdpDrop {
				return
			}
			assert.Equal(t, want, out, "output frame")
		})
	}
}

// The Go drop reasons name every counter the program has, so a reason added
// in lb.h without its Go name (or the reverse) fails here, not in --stats.
func TestDropReasonsMatchTheDataPlane(t *testing.T) {
	spec, err := bpf.LoadLb()
	require.NoError(t, err)
	require.EqualValues(t, dropReasonCount, spec.Maps[bpf.LbMapDropStats].MaxEntries)
	for r := DropReason(0); r < dropReasonCount; r++ {
		assert.NotContains(t, r.String(), "reason_")
	}
}

package lbnode

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type decapCase struct {
	name string
	in   []byte
	// want is the expected frame; nil means the input, unchanged.
	want []byte
}

func decapCases() []decapCase {
	m := macs()
	lb4, lb6 := addr("172.16.1.2"), addr("fd00:6d66::1:2")
	be4, be6 := addr("10.0.1.11"), addr("fc00:1::11")
	inner4 := ipv4Packet(client4(), addr("10.200.0.10"), protoTCP, v4opts{df: true}, tcpSegment(40000, 80, tcpACK, payloadOf(33)))
	inner6 := ipv6Packet(client6(), addr("2001:db8::10"), protoTCP, 0, tcpSegment(40000, 443, tcpACK, payloadOf(33)))
	outer4 := func(proto uint8, inner []byte) []byte {
		return ether(m.node, m.router, ethIPv4, ipv4Packet(lb4, be4, proto, v4opts{}, inner))
	}
	outer6 := func(proto uint8, inner []byte) []byte {
		return ether(m.node, m.router, ethIPv6, ipv6Packet(lb6, be6, proto, 0, inner))
	}
	gue := func(dport uint16, inner []byte) []byte { return udpDatagram(49999, dport, inner) }
	return []decapCase{
		{"decap ipv4 in ipv4", outer4(protoIPIP, inner4), ether(m.node, m.router, ethIPv4, inner4)},
		{"decap ipv6 in ipv6", outer6(protoIPv6, inner6), ether(m.node, m.router, ethIPv6, inner6)},
		{"decap ipv4 in ipv6", outer6(protoIPIP, inner4), ether(m.node, m.router, ethIPv4, inner4)},
		{"decap ipv6 in ipv4", outer4(protoIPv6, inner6), ether(m.node, m.router, ethIPv6, inner6)},
		{"decap leaves plain tcp alone", ether(m.node, m.router, ethIPv4, inner4), nil},
		{"decap leaves gre alone", outer4(47, inner4), nil},
		{"decap gue ipv4 over ipv4", outer4(protoUDP, gue(DefaultGUEPort, inner4)), ether(m.node, m.router, ethIPv4, inner4)},
		{"decap gue ipv6 over ipv6", outer6(protoUDP, gue(DefaultGUEPort, inner6)), ether(m.node, m.router, ethIPv6, inner6)},
		{"decap gue ipv4 over ipv6", outer6(protoUDP, gue(DefaultGUEPort, inner4)), ether(m.node, m.router, ethIPv4, inner4)},
		{"decap leaves udp to other ports alone", outer4(protoUDP, gue(53, inner4)), nil},
		{"decap leaves gue port without ip inside alone", outer4(protoUDP, gue(DefaultGUEPort, payloadOf(40))), nil},
		{"decap leaves arp alone", ether(broadcastMAC(), m.router, ethARP, make([]byte, 28)), nil},
	}
}

func openTestDecap(t *testing.T) *Decap {
	t.Helper()
	requireBPF(t)
	d, err := AttachDecap(DecapConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestDecapPacketFixtures(t *testing.T) {
	d := openTestDecap(t)
	for _, tc := range decapCases() {
		t.Run(tc.name, func(t *testing.T) {
			verdict, out := run(t, d.Program(), tc.in)
			require.Equal(t, uint32(xdpPass), verdict)
			want := tc.in
			if tc.want != nil {
				want = tc.want
			}
			assert.Equal(t, want, out)
		})
	}
	s, err := d.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), s.IPv4.Packets, "outer IPv4 packets decapsulated")
	assert.Equal(t, uint64(2), s.IPv6.Packets, "outer IPv6 packets decapsulated")
	assert.Equal(t, uint64(3), s.GUE.Packets, "GUE packets decapsulated")
}

// What the balancer sends, the decap program must turn back into the
// client's packet.
func TestDecapUndoesBalancerEncap(t *testing.T) {
	n := openTestNode(t, Config{})
	fs := fixtureServices()
	setup(t, n, []service{fs["v4tcp"], fs["v6tcp"], fs["v6udp"], fs["v4udpAll"], fs["gue4"], fs["gue6"], fs["gueMixed"]})
	d := openTestDecap(t)
	for _, in := range [][]byte{
		tcp4(client4(), addr("10.200.0.10"), 40000, 80, tcpACK, v4opts{df: true}, 100),
		udp4(client4(), addr("10.200.0.10"), 40000, 53, v4opts{df: true}, 100),
		tcp6(client6(), addr("2001:db8::10"), 40000, 443, tcpACK, 0, 100),
		udp6(client6(), addr("2001:db8::10"), 40000, 53, 100),
		tcp4(client4(), addr("10.200.0.60"), 40000, 80, tcpACK, v4opts{df: true}, 100),
		tcp6(client6(), addr("2001:db8::60"), 40000, 443, tcpACK, 0, 100),
		udp4(client4(), addr("10.200.0.61"), 40000, 9, v4opts{df: true}, 100),
	} {
		verdict, encapped := run(t, n.Program(), in)
		require.Equal(t, uint32(xdpTX), verdict)
		verdict, out := run(t, d.Program(), encapped)
		require.Equal(t, uint32(xdpPass), verdict)
		assert.Equal(t, in[12:], out[12:], "inner packet survives the round trip")
	}
}

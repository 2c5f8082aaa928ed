package lbnode

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Packet builders for the fixtures: just enough of each header to exercise
// the data plane, written out field by field so the expected bytes are
// computed independently of the C.

const (
	ethIPv4 = 0x0800
	ethIPv6 = 0x86dd
	ethARP  = 0x0806
	ethVLAN = 0x8100

	protoICMP   = 1
	protoIPIP   = 4
	protoTCP    = 6
	protoUDP    = 17
	protoIPv6   = 41
	protoFrag6  = 44
	protoICMPv6 = 58
	protoHop6   = 0
	protoDst6   = 60

	tcpSYN = 0x02
	tcpACK = 0x10
)

type v4opts struct {
	tos     uint8
	df, mf  bool
	fragOff uint16 // in 8-byte units
	options []byte // multiple of 4 bytes
}

func ether(dst, src net.HardwareAddr, ethType uint16, payload []byte) []byte {
	b := make([]byte, 14, 14+len(payload))
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], ethType)
	return append(b, payload...)
}

func ipv4Packet(src, dst netip.Addr, proto uint8, o v4opts, payload []byte) []byte {
	ihl := 5 + len(o.options)/4
	h := make([]byte, ihl*4, ihl*4+len(payload))
	h[0] = 0x40 | byte(ihl)
	h[1] = o.tos
	binary.BigEndian.PutUint16(h[2:], uint16(ihl*4+len(payload)))
	binary.BigEndian.PutUint16(h[4:], 0x1234)
	frag := o.fragOff
	if o.df {
		frag |= 0x4000
	}
	if o.mf {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8] = 61
	h[9] = proto
	s, d := src.As4(), dst.As4()
	copy(h[12:16], s[:])
	copy(h[16:20], d[:])
	copy(h[20:], o.options)
	binary.BigEndian.PutUint16(h[10:], inetChecksum(h, 0))
	return append(h, payload...)
}

func ipv6Packet(src, dst netip.Addr, nextHeader, trafficClass uint8, payload []byte) []byte {
	h := make([]byte, 40, 40+len(payload))
	binary.BigEndian.PutUint32(h[0:], 6<<28|uint32(trafficClass)<<20|0x12345)
	binary.BigEndian.PutUint16(h[4:], uint16(len(payload)))
	h[6] = nextHeader
	h[7] = 63
	s, d := src.As16(), dst.As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
	return append(h, payload...)
}

func tcpSegment(sport, dport uint16, flags byte, payload []byte) []byte {
	h := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint32(h[4:], 1000)
	if flags&tcpACK != 0 {
		binary.BigEndian.PutUint32(h[8:], 2000)
	}
	h[12] = 5 << 4
	h[13] = flags
	binary.BigEndian.PutUint16(h[14:], 65535)
	return append(h, payload...)
}

func udpDatagram(sport, dport uint16, payload []byte) []byte {
	h := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	return append(h, payload...)
}

// inetChecksum is RFC 1071's ones'-complement sum, continuing from sum.
func inetChecksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func payloadOf(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

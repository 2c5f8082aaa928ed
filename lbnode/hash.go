package lbnode

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// flowTuple is the part of a packet the data plane hashes.
type flowTuple struct {
	Src, Dst     netip.Addr
	SPort, DPort uint16
	Protocol     Protocol
}

// encodeAddr lays an address out the way the data plane's maps hold it: the
// bytes in network order, read as little-endian 32-bit words (the only byte
// order metalflow's nodes run), IPv4 in the first word.
func encodeAddr(a netip.Addr) [4]uint32 {
	var w [4]uint32
	if a.Is4() {
		b := a.As4()
		w[0] = binary.LittleEndian.Uint32(b[:])
		return w
	}
	b := a.As16()
	for i := range w {
		w[i] = binary.LittleEndian.Uint32(b[i*4:])
	}
	return w
}

func decodeAddr(w [4]uint32, family uint8) netip.Addr {
	if family == familyV4 {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], w[0])
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	for i := range w {
		binary.LittleEndian.PutUint32(b[i*4:], w[i])
	}
	return netip.AddrFrom16(b)
}

// swapPort is a port as the data plane holds it: network byte order in a
// little-endian 16-bit field.
func swapPort(p uint16) uint16 { return bits.ReverseBytes16(p) }

func familyOf(a netip.Addr) uint8 {
	if a.Is4() {
		return familyV4
	}
	return familyV6
}

// hashFlow mirrors hash_flow in bpf/xdp_lb.c. It lets tests and tools
// predict which backend and outer source address a flow gets.
func hashFlow(f flowTuple, seed uint32) uint32 {
	h := seed
	for _, w := range encodeAddr(f.Src) {
		h = hashWord(h, w)
	}
	for _, w := range encodeAddr(f.Dst) {
		h = hashWord(h, w)
	}
	h = hashWord(h, uint32(swapPort(f.SPort))|uint32(swapPort(f.DPort))<<16)
	h = hashWord(h, uint32(f.Protocol))
	h ^= 40
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

func hashWord(h, k uint32) uint32 {
	k *= 0xcc9e2d51
	k = bits.RotateLeft32(k, 15)
	k *= 0x1b873593
	h ^= k
	h = bits.RotateLeft32(h, 13)
	return h*5 + 0xe6546b64
}

// applyHashFlags applies a VIP's hashing flags the way the data plane does
// before it indexes the Maglev ring.
func applyHashFlags(f flowTuple, flags VIPFlags) flowTuple {
	switch {
	case flags&HashDestinationPortOnly != 0:
		if f.Src.Is4() {
			f.Src = netip.IPv4Unspecified()
		} else {
			f.Src = netip.IPv6Unspecified()
		}
		f.SPort = 0
	case flags&HashNoSourcePort != 0:
		f.SPort = 0
	}
	return f
}

package lbnode

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// maxTestFrame keeps fuzzed frames under what BPF_PROG_TEST_RUN accepts
// for XDP (a page minus headroom and shared info).
const maxTestFrame = 3000

// balanceable says whether a frame is one the balancer may send on: IPv4
// or IPv6 straight after Ethernet, then a packet wellFormed accepts. It
// returns the IP packet without Ethernet padding. Anything else must be
// passed to the stack or dropped.
func balanceable(in []byte) ([]byte, error) {
	if len(in) < 14 {
		return nil, fmt.Errorf("no Ethernet header")
	}
	ethType := binary.BigEndian.Uint16(in[12:])
	if ethType != ethIPv4 && ethType != ethIPv6 {
		return nil, fmt.Errorf("ethertype %#04x", ethType)
	}
	return wellFormed(ethType, in[14:])
}

// wellFormed checks an IP packet (maybe followed by padding) the way a
// receiving stack would before handing it to TCP or UDP: a plain header (no
// IPv4 options, no IPv6 extension headers), not a fragment, an IP length
// covering the headers and within the bytes there are, a TCP data offset of
// at least 5 words within the IP payload, a UDP length of at least 8 within
// the IP payload. It returns the packet without padding.
func wellFormed(ethType uint16, ip []byte) ([]byte, error) {
	var l4 byte
	var l3len, hdr int
	switch ethType {
	case ethIPv4:
		if len(ip) < 20 {
			return nil, fmt.Errorf("truncated IPv4 header")
		}
		if ip[0]>>4 != 4 || ip[0]&0xf != 5 {
			return nil, fmt.Errorf("IPv4 version/IHL byte %#x", ip[0])
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return nil, fmt.Errorf("IPv4 fragment")
		}
		l4, l3len, hdr = ip[9], int(binary.BigEndian.Uint16(ip[2:])), 20
	case ethIPv6:
		if len(ip) < 40 {
			return nil, fmt.Errorf("truncated IPv6 header")
		}
		if ip[0]>>4 != 6 {
			return nil, fmt.Errorf("IPv6 version %d", ip[0]>>4)
		}
		l4, l3len, hdr = ip[6], 40+int(binary.BigEndian.Uint16(ip[4:])), 40
	default:
		return nil, fmt.Errorf("ethertype %#04x", ethType)
	}
	if l4 != protoTCP && l4 != protoUDP {
		return nil, fmt.Errorf("protocol %d", l4)
	}
	if l3len > len(ip) {
		return nil, fmt.Errorf("IP length %d longer than the %d bytes there are", l3len, len(ip))
	}
	if l3len < hdr {
		return nil, fmt.Errorf("IP length %d shorter than the IP header (%d)", l3len, hdr)
	}
	seg := ip[hdr:l3len]
	if l4 == protoTCP {
		if len(seg) < 20 {
			return nil, fmt.Errorf("IP payload of %d bytes is shorter than a TCP header", len(seg))
		}
		if off := int(seg[12]>>4) * 4; off < 20 || off > len(seg) {
			return nil, fmt.Errorf("TCP data offset %d bytes in a %d-byte segment", off, len(seg))
		}
	} else {
		if len(seg) < 8 {
			return nil, fmt.Errorf("IP payload of %d bytes is shorter than a UDP header", len(seg))
		}
		if ulen := int(binary.BigEndian.Uint16(seg[4:])); ulen < 8 || ulen > len(seg) {
			return nil, fmt.Errorf("UDP length %d in a %d-byte IP payload", ulen, len(seg))
		}
	}
	return ip[:l3len], nil
}

// unwrap takes the client's packet out of a frame the balancer encapsulated,
// trusting only the outer headers' own length fields: IP-in-IP or GUE over
// IPv4 or IPv6.
func unwrap(out []byte) ([]byte, error) {
	if len(out) < 14 {
		return nil, fmt.Errorf("%d-byte frame", len(out))
	}
	ip := out[14:]
	var next byte
	var payload []byte
	switch binary.BigEndian.Uint16(out[12:]) {
	case ethIPv4:
		if len(ip) < 20 || ip[0] != 0x45 {
			return nil, fmt.Errorf("outer IPv4 header")
		}
		if inetChecksum(ip[:20], 0) != 0 {
			return nil, fmt.Errorf("outer IPv4 checksum")
		}
		if l := int(binary.BigEndian.Uint16(ip[2:])); l != len(ip) {
			return nil, fmt.Errorf("outer IPv4 length %d, %d bytes sent", l, len(ip))
		}
		next, payload = ip[9], ip[20:]
	case ethIPv6:
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return nil, fmt.Errorf("outer IPv6 header")
		}
		if l := 40 + int(binary.BigEndian.Uint16(ip[4:])); l != len(ip) {
			return nil, fmt.Errorf("outer IPv6 length %d, %d bytes sent", l, len(ip))
		}
		next, payload = ip[6], ip[40:]
	default:
		return nil, fmt.Errorf("outer ethertype %#04x", binary.BigEndian.Uint16(out[12:]))
	}
	if next == protoUDP {
		if len(payload) < 8 || binary.BigEndian.Uint16(payload[2:]) != DefaultGUEPort {
			return nil, fmt.Errorf("outer UDP header is not GUE")
		}
		if l := int(binary.BigEndian.Uint16(payload[4:])); l != len(payload) {
			return nil, fmt.Errorf("GUE UDP length %d, %d bytes sent", l, len(payload))
		}
		payload = payload[8:]
		if len(payload) == 0 {
			return nil, fmt.Errorf("empty GUE payload")
		}
		switch payload[0] >> 4 {
		case 4:
			next = protoIPIP
		case 6:
			next = protoIPv6
		}
	}
	switch next {
	case protoIPIP:
		return wellFormed(ethIPv4, payload)
	case protoIPv6:
		return wellFormed(ethIPv6, payload)
	}
	return nil, fmt.Errorf("outer protocol %d", next)
}

// toVIPAddress says whether a frame is TCP or UDP to an address that
// carries a VIP, with an IP header the data plane can read.
func toVIPAddress(in []byte, vipAddrs map[netip.Addr]bool) bool {
	if len(in) < 14 {
		return false
	}
	ip := in[14:]
	switch binary.BigEndian.Uint16(in[12:]) {
	case ethIPv4:
		return len(ip) >= 20 && ip[0]>>4 == 4 && (ip[9] == protoTCP || ip[9] == protoUDP) &&
			vipAddrs[netip.AddrFrom4([4]byte(ip[16:20]))]
	case ethIPv6:
		return len(ip) >= 40 && ip[0]>>4 == 6 && (ip[6] == protoTCP || ip[6] == protoUDP) &&
			vipAddrs[netip.AddrFrom16([16]byte(ip[24:40]))]
	}
	return false
}

// malformedVariants breaks a valid frame in the ways the data plane must
// refuse: bad version and IHL, lengths that disagree with the frame,
// fragments, truncated headers, TCP data offsets and UDP lengths that do not
// fit.
func malformedVariants(in []byte) [][]byte {
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(in)) }
	var out [][]byte
	ip := 14
	switch binary.BigEndian.Uint16(in[12:]) {
	case ethIPv4:
		for _, vihl := range []byte{0x65, 0x44, 0x46, 0x4f, 0x05} {
			out = append(out, mutate(func(b []byte) []byte { b[ip] = vihl; return b }))
		}
		for _, tl := range []uint16{0, 20, 27, 39, uint16(len(in) - 14 + 1), 1500, 65535} {
			out = append(out, mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[ip+2:], tl); return b }))
		}
		for _, frag := range []uint16{0x2000, 0x0001, 0x6000, 0x1fff} {
			out = append(out, mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[ip+6:], frag); return b }))
		}
	case ethIPv6:
		out = append(out, mutate(func(b []byte) []byte { b[ip] = 0x40 | b[ip]&0xf; return b }))
		for _, pl := range []uint16{0, 7, 19, uint16(len(in) - 14 - 40 + 1), 1500, 65535} {
			out = append(out, mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[ip+4:], pl); return b }))
		}
	}
	// The transport header: data offsets short of a TCP header or past the
	// segment, UDP lengths short of a UDP header or past the IP payload.
	l4, proto, l4len := ip+20, in[ip+9], len(in)-ip-20
	if binary.BigEndian.Uint16(in[12:]) == ethIPv6 {
		l4, proto, l4len = ip+40, in[ip+6], len(in)-ip-40
	}
	switch proto {
	case protoTCP:
		for _, doff := range []byte{0, 1, 4, byte(min(15, l4len/4+1)), 15} {
			if int(doff)*4 > l4len || doff < 5 {
				out = append(out, mutate(func(b []byte) []byte { b[l4+12] = doff<<4 | b[l4+12]&0xf; return b }))
			}
		}
	case protoUDP:
		for _, ulen := range []uint16{0, 1, 7, uint16(l4len + 1), 65535} {
			out = append(out, mutate(func(b []byte) []byte { binary.BigEndian.PutUint16(b[l4+4:], ulen); return b }))
		}
	}
	for _, cut := range []int{14, 14 + 19, 14 + 20 + 7, 14 + 39, 14 + 40 + 7, len(in) - 1} {
		if cut >= 14 && cut < len(in) {
			out = append(out, bytes.Clone(in[:cut]))
		}
	}
	// Padding after a valid packet is not malformed: it must still balance.
	return append(out, append(bytes.Clone(in), make([]byte, 18)...))
}

func FuzzBalancerPackets(f *testing.F) {
	n := openTestNode(f, Config{})
	vipAddrs := map[netip.Addr]bool{}
	for _, s := range fixtureServices() {
		setup(f, n, []service{s})
		vipAddrs[s.vip.Addr] = true
	}
	prog := n.Program()
	m := macs()
	for _, tc := range balancerCases() {
		f.Add(tc.in)
		if tc.verdict == xdpTX {
			for _, v := range malformedVariants(tc.in) {
				f.Add(v)
			}
		}
	}
	for _, r := range randomFrames(300) {
		f.Add(r)
	}
	f.Add([]byte{})
	f.Add(make([]byte, 13))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > maxTestFrame {
			in = in[:maxTestFrame]
		}
		before := dropCounts(t, n)
		opts := runOpts(in)
		verdict, err := prog.Run(&opts)
		if len(in) < 14 {
			// The kernel refuses to run XDP on less than an Ethernet
			// header; the Go side must get an error, not a verdict.
			if err == nil {
				t.Fatalf("a %d-byte frame ran, verdict %d", len(in), verdict)
			}
			return
		}
		if err != nil {
			t.Fatalf("running a %d-byte frame: %v", len(in), err)
		}
		// Every drop is counted under exactly one reason; nothing else
		// moves a drop counter.
		moved := 0
		for r, c := range dropCounts(t, n) {
			moved += int(c - before[r])
		}
		if want := map[bool]int{true: 1}[verdict == xdpDrop]; moved != want {
			t.Fatalf("verdict %d moved the drop counters by %d: % x", verdict, moved, head(in))
		}
		ip, malformed := balanceable(in)
		if malformed != nil && toVIPAddress(in, vipAddrs) && verdict != xdpDrop {
			t.Fatalf("verdict %d for a packet to a VIP address that is not well formed (%v): % x", verdict, malformed, head(in))
		}
		out := opts.DataOut
		switch verdict {
		case xdpDrop, xdpPass:
			return
		case xdpTX:
		default:
			t.Fatalf("verdict %d for % x", verdict, head(in))
		}
		if malformed != nil {
			t.Fatalf("sent on a malformed frame (%v): % x", malformed, head(in))
		}
		if len(out) < 14 {
			t.Fatalf("sent a %d-byte frame", len(out))
		}
		back := bytes.Equal(out[0:6], in[6:12])
		switch {
		case back && isICMPTooBig(out):
			// Back to the client: an ICMP "too big" is the one reply.
		case bytes.Equal(out[0:6], m.nextHop):
			// To a backend: outer headers whose lengths cover exactly
			// the client's packet, whole and well formed.
			inner, err := unwrap(out)
			if err != nil {
				t.Fatalf("encapsulated frame: %v:\n in % x\nout % x", err, head(in), head(out))
			}
			if !bytes.Equal(inner, ip) {
				t.Fatalf("encapsulated frame does not carry the client's packet:\n in % x\nout % x", head(in), head(out))
			}
		case back:
			t.Fatalf("sent back to the client something other than ICMP too big:\n in % x\nout % x", head(in), head(out))
		default:
			t.Fatalf("sent to an unknown MAC:\n in % x\nout % x", head(in), head(out))
		}
	})
}

// randomFrames are seeds of random bytes that get far enough to matter:
// addressed to the node, IPv4 or IPv6 with the right version, TCP or UDP, to
// a VIP address most of the time, every other byte (lengths, IHL, data
// offsets, flags) random. The generator is seeded, so they are the same on
// every run.
func randomFrames(count int) [][]byte {
	rng := rand.New(rand.NewPCG(9, 9))
	m := macs()
	vips := []netip.Addr{addr("10.200.0.10"), addr("10.200.0.11"), addr("10.200.0.60"), addr("2001:db8::10"), addr("2001:db8::60"), addr("10.200.0.99")}
	frames := make([][]byte, 0, count)
	for range count {
		ip := make([]byte, rng.IntN(120))
		for i := range ip {
			ip[i] = byte(rng.Uint32())
		}
		dst := vips[rng.IntN(len(vips))]
		proto := []byte{protoTCP, protoUDP}[rng.IntN(2)]
		ethType := uint16(ethIPv4)
		if dst.Is4() {
			if len(ip) >= 20 {
				ip[0] = 0x40 | ip[0]&0xf
				ip[9] = proto
				d := dst.As4()
				copy(ip[16:20], d[:])
			}
		} else {
			ethType = ethIPv6
			if len(ip) >= 40 {
				ip[0] = 0x60 | ip[0]&0xf
				ip[6] = proto
				d := dst.As16()
				copy(ip[24:40], d[:])
			}
		}
		frames = append(frames, ether(m.node, m.router, ethType, ip))
	}
	return frames
}

// isICMPTooBig says whether a frame is ICMP "fragmentation needed" or
// ICMPv6 "packet too big".
func isICMPTooBig(out []byte) bool {
	switch binary.BigEndian.Uint16(out[12:]) {
	case ethIPv4:
		return len(out) >= 14+22 && out[14+9] == protoICMP && out[14+20] == 3 && out[14+21] == 4
	case ethIPv6:
		return len(out) >= 14+41 && out[14+6] == protoICMPv6 && out[14+40] == 2
	}
	return false
}

// head is what a failure shows of a frame: the headers, not the payload.
func head(b []byte) []byte { return b[:min(len(b), 96)] }

// TestBalancerRefusesBrokenVariantsOfGoodPackets pins what the fuzz found:
// every packet the fixtures balance is still balanced with Ethernet
// padding, and never once its version, IHL, lengths, fragment bits, TCP data
// offset or UDP length are broken or it is cut short; then it is dropped
// whenever its destination can still be read.
func TestBalancerRefusesBrokenVariantsOfGoodPackets(t *testing.T) {
	n := openTestNode(t, Config{})
	vipAddrs := map[netip.Addr]bool{}
	for _, s := range fixtureServices() {
		setup(t, n, []service{s})
		vipAddrs[s.vip.Addr] = true
	}
	checked := 0
	for _, tc := range balancerCases() {
		if tc.verdict != xdpTX {
			continue
		}
		variants := malformedVariants(tc.in)
		padded := variants[len(variants)-1]
		if v, _ := run(t, n.Program(), padded); v != xdpTX {
			t.Errorf("%s: with padding, verdict %d", tc.name, v)
		}
		for _, bad := range variants[:len(variants)-1] {
			if _, err := balanceable(bad); err == nil {
				continue // the cut kept a whole, consistent packet
			}
			if len(bad) < 14 {
				continue
			}
			v, _ := run(t, n.Program(), bad)
			if v == xdpTX {
				t.Errorf("%s: broken variant sent on: % x", tc.name, head(bad))
			}
			// Every fixture that is sent on goes to a VIP address, so a
			// broken variant whose header can still be read is dropped.
			if toVIPAddress(bad, vipAddrs) && v != xdpDrop {
				t.Errorf("%s: broken variant to a VIP address, verdict %d: % x", tc.name, v, head(bad))
			}
			checked++
		}
	}
	if checked < 100 {
		t.Fatalf("only %d broken variants checked", checked)
	}
}

package lbnode

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

// maxTestFrame keeps fuzzed frames under what BPF_PROG_TEST_RUN accepts
// for XDP (a page minus headroom and shared info).
const maxTestFrame = 3000

// balanceable says whether a frame is one the balancer may send on: IPv4
// or IPv6 straight after Ethernet, a plain header (no IPv4 options, no
// IPv6 extension headers), not a fragment, TCP or UDP whose header fits,
// and IP lengths that agree with the frame (which may carry padding). It
// returns the IP packet without padding. Anything else must be passed to
// the stack or dropped.
func balanceable(in []byte) ([]byte, error) {
	if len(in) < 14 {
		return nil, fmt.Errorf("no Ethernet header")
	}
	ip := in[14:]
	var l4 byte
	var l3len, hdr int
	switch binary.BigEndian.Uint16(in[12:]) {
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
		return nil, fmt.Errorf("ethertype %#04x", binary.BigEndian.Uint16(in[12:]))
	}
	switch l4 {
	case protoTCP:
		hdr += 20
	case protoUDP:
		hdr += 8
	default:
		return nil, fmt.Errorf("protocol %d", l4)
	}
	if l3len < hdr {
		return nil, fmt.Errorf("IP length %d shorter than the headers (%d)", l3len, hdr)
	}
	if l3len > len(ip) {
		return nil, fmt.Errorf("IP length %d longer than the frame's %d bytes", l3len, len(ip))
	}
	return ip[:l3len], nil
}

// malformedVariants breaks a valid frame in the ways the data plane must
// refuse: bad version and IHL, lengths that disagree with the frame,
// fragments, truncated headers.
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
	for _, s := range fixtureServices() {
		setup(f, n, []service{s})
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
	f.Add([]byte{})
	f.Add(make([]byte, 13))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > maxTestFrame {
			in = in[:maxTestFrame]
		}
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
		out := opts.DataOut
		switch verdict {
		case xdpDrop, xdpPass:
			return
		case xdpTX:
		default:
			t.Fatalf("verdict %d for % x", verdict, head(in))
		}
		ip, err := balanceable(in)
		if err != nil {
			t.Fatalf("sent on a malformed frame (%v): % x", err, head(in))
		}
		if len(out) < 14 {
			t.Fatalf("sent a %d-byte frame", len(out))
		}
		switch {
		case bytes.Equal(out[0:6], m.nextHop):
			// To a backend: the client's packet must be inside, whole.
			for _, outer := range []int{20, 28, 40, 48} {
				if len(out) >= 14+outer && bytes.HasPrefix(out[14+outer:], ip) {
					return
				}
			}
			t.Fatalf("encapsulated frame does not carry the client's packet:\n in % x\nout % x", head(in), head(out))
		case bytes.Equal(out[0:6], in[6:12]):
			// Back to the client: only an ICMP "too big".
			ethType := binary.BigEndian.Uint16(out[12:])
			if ethType == ethIPv4 && len(out) >= 14+21 && out[14+9] == protoICMP && out[14+20] == 3 {
				return
			}
			if ethType == ethIPv6 && len(out) >= 14+41 && out[14+6] == protoICMPv6 && out[14+40] == 2 {
				return
			}
			t.Fatalf("sent back to the client something other than ICMP too big:\n in % x\nout % x", head(in), head(out))
		default:
			t.Fatalf("sent to an unknown MAC:\n in % x\nout % x", head(in), head(out))
		}
	})
}

// head is what a failure shows of a frame: the headers, not the payload.
func head(b []byte) []byte { return b[:min(len(b), 96)] }

// TestBalancerRefusesBrokenVariantsOfGoodPackets pins what the fuzz found:
// every packet the fixtures balance is still balanced with Ethernet
// padding, and never once its version, IHL, lengths or fragment bits are
// broken or it is cut short.
func TestBalancerRefusesBrokenVariantsOfGoodPackets(t *testing.T) {
	n := openTestNode(t, Config{})
	for _, s := range fixtureServices() {
		setup(t, n, []service{s})
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
			if v, _ := run(t, n.Program(), bad); v == xdpTX {
				t.Errorf("%s: broken variant sent on: % x", tc.name, head(bad))
			}
			checked++
		}
	}
	if checked < 100 {
		t.Fatalf("only %d broken variants checked", checked)
	}
}

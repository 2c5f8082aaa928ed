package netlab

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"strings"
)

// Subnet is an IPv4 /24 and an IPv6 /64 for one link of a lab.
type Subnet struct {
	V4, V6 netip.Prefix
}

// Host4 is address n of the IPv4 subnet, with the subnet's length:
// its String is what Address takes, its Addr the bare address.
func (s Subnet) Host4(n byte) netip.Prefix { return host(s.V4, n) }

// Host6 is address n of the IPv6 subnet, with the subnet's length.
func (s Subnet) Host6(n byte) netip.Prefix { return host(s.V6, n) }

func host(p netip.Prefix, n byte) netip.Prefix {
	b := p.Addr().AsSlice()
	b[len(b)-1] = n
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, p.Bits())
}

// FreeSubnet draws a subnet in 10.0.0.0/8 and fd00:6d66::/32 ("mf") that
// no route or address of the root namespace overlaps, nor any subnet this
// lab drew before. Links between lab namespaces may use any addresses, as
// nothing outside sees them; a link to the root namespace must not shadow
// a network the host uses (this machine, for one, has 192.0.2.0/24 and
// fd00::/64 on eth0), so it takes its addresses from here.
func (l *Lab) FreeSubnet() Subnet {
	l.t.Helper()
	taken := l.rootPrefixes()
	l.mu.Lock()
	defer l.mu.Unlock()
	taken = append(taken, l.subnets...)
	overlaps := func(p netip.Prefix) bool {
		for _, q := range taken {
			// A default route overlaps everything and says nothing about
			// what the host uses.
			if q.Bits() > 0 && q.Overlaps(p) {
				return true
			}
		}
		return false
	}
	for range 100 {
		var r [4]byte
		if _, err := rand.Read(r[:]); err != nil {
			l.t.Fatalf("netlab: drawing a subnet: %v", err)
		}
		var a16 [16]byte
		binary.BigEndian.PutUint16(a16[0:], 0xfd00)
		binary.BigEndian.PutUint16(a16[2:], 0x6d66)
		copy(a16[4:6], r[2:4])
		s := Subnet{
			V4: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, r[0], r[1], 0}), 24),
			V6: netip.PrefixFrom(netip.AddrFrom16(a16), 64),
		}
		if overlaps(s.V4) || overlaps(s.V6) {
			continue
		}
		l.subnets = append(l.subnets, s.V4, s.V6)
		return s
	}
	l.t.Fatalf("netlab: no free subnet in 100 draws")
	return Subnet{}
}

// rootPrefixes lists every prefix and address the root namespace has in
// any routing table, including local and broadcast routes.
func (l *Lab) rootPrefixes() []netip.Prefix {
	l.t.Helper()
	var out []netip.Prefix
	for _, args := range [][]string{{"-4", "route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"}, {"-o", "addr", "show"}} {
		for _, f := range strings.Fields(l.mustIP(args...)) {
			if p, err := netip.ParsePrefix(f); err == nil {
				out = append(out, p.Masked())
			} else if a, err := netip.ParseAddr(f); err == nil {
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
			}
		}
	}
	return out
}

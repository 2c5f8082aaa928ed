package netlab

import (
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
)

// Veth joins namespaces a and b (which may be the same) with a veth pair,
// brings both ends up and returns their names: the lab's prefix followed by
// roleA and roleB, so at most 7 characters each. The ends have no address
// until Address gives them one.
func (l *Lab) Veth(a, roleA, b, roleB string) (ifA, ifB string) {
	l.t.Helper()
	l.mustOwn(a)
	l.mustOwn(b)
	names := l.interfaceNames(roleA, roleB)
	ifA, ifB = names[0], names[1]
	l.mustIP("link", "add", ifA, "netns", a, "type", "veth", "peer", "name", ifB, "netns", b)
	l.mustIP("-n", a, "link", "set", ifA, "up")
	l.mustIP("-n", b, "link", "set", ifB, "up")
	return ifA, ifB
}

// RootLink is a veth pair from the root namespace, where the test process
// runs, to a lab namespace: how processes in the lab reach a server the
// test runs itself (Temporal, say), or how the test talks to daemons in
// the lab without entering it. It is the one thing a lab configures
// outside its namespaces, on a subnet nothing on the host overlaps.
type RootLink struct {
	// RootInterface is the end in the root namespace; it has Root4 and
	// Root6, the first addresses of Subnet.
	RootInterface string
	Root4, Root6  netip.Addr
	// Interface is the end in the lab namespace. It has no address: give
	// it one or more from Subnet with Address.
	Interface string
	Subnet    Subnet
}

// VethToRoot joins ns to the root namespace with a veth pair on a fresh
// subnet (see FreeSubnet). The root end is deleted when the test ends.
func (l *Lab) VethToRoot(ns, rootRole, nsRole string) RootLink {
	l.t.Helper()
	l.mustOwn(ns)
	s := l.FreeSubnet()
	names := l.interfaceNames(rootRole, nsRole)
	rootIf, nsIf := names[0], names[1]
	l.mustIP("link", "add", rootIf, "type", "veth", "peer", "name", nsIf, "netns", ns)
	// The pair would also go with the namespace; deleting the root end
	// first means nothing of the lab outlives the test on the host even if
	// deleting the namespace fails.
	l.t.Cleanup(func() { _ = exec.Command("ip", "link", "del", rootIf).Run() })
	l.mustIP("addr", "add", s.Host4(1).String(), "dev", rootIf)
	// nodad: duplicate address detection would hold the address back for
	// a second or two, and nothing else is on this link.
	l.mustIP("-6", "addr", "add", s.Host6(1).String(), "dev", rootIf, "nodad")
	l.mustIP("link", "set", rootIf, "up")
	l.mustIP("-n", ns, "link", "set", nsIf, "up")
	return RootLink{RootInterface: rootIf, Root4: s.Host4(1).Addr(), Root6: s.Host6(1).Addr(), Interface: nsIf, Subnet: s}
}

// RouteFromRoot routes the root namespace's traffic for s, a subnet this
// lab drew, into link, to the gateway at address n of link's subnet on the
// namespace end (give that end the address first). It is how the test
// process answers namespaces behind the one at the end of a RootLink: LB
// nodes behind a management router, say, all reaching one server on
// link.Root4. Only drawn subnets are taken, so the route never shadows one
// of the host's networks; it goes with the link's root end.
func (l *Lab) RouteFromRoot(link RootLink, n byte, s Subnet) {
	l.t.Helper()
	if n < 2 || n == 255 {
		l.t.Fatalf("netlab: gateway .%d on %s: want an address of the namespace end, 2 to 254", n, link.RootInterface)
	}
	l.mu.Lock()
	drew := slices.Contains(l.subnets, s.V4) && slices.Contains(l.subnets, s.V6)
	ours := l.interfaces[link.RootInterface] && slices.Contains(l.subnets, link.Subnet.V4)
	l.mu.Unlock()
	if !drew {
		l.t.Fatalf("netlab: %v and %v: not a subnet this lab drew with FreeSubnet", s.V4, s.V6)
	}
	if !ours {
		l.t.Fatalf("netlab: %q is not the root end of one of this lab's links", link.RootInterface)
	}
	l.mustIP("route", "add", s.V4.String(), "via", link.Subnet.Host4(n).Addr().String(), "dev", link.RootInterface)
	l.mustIP("-6", "route", "add", s.V6.String(), "via", link.Subnet.Host6(n).Addr().String(), "dev", link.RootInterface)
}

// Address adds addresses in CIDR notation ("10.0.0.2/24", "fd00::2/64")
// to interface dev in ns; dev may be "lo".
func (l *Lab) Address(ns, dev string, cidrs ...string) {
	l.t.Helper()
	l.mustOwn(ns)
	var prefixes []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			l.t.Fatalf("netlab: address %q for %s in %s: %v", c, dev, ns, err)
		}
		prefixes = append(prefixes, p)
	}
	for _, p := range prefixes {
		if p.Addr().Is4() {
			l.IP(ns, "addr", "add", p.String(), "dev", dev)
			continue
		}
		// nodad: duplicate address detection would hold the address back
		// for a second or two; lab links have no one else on them.
		l.IP(ns, "-6", "addr", "add", p.String(), "dev", dev, "nodad")
	}
}

// Route points the route to dst ("default" or a prefix) in ns at the
// gateways in via: one is a plain route, more spread flows over all of them
// (ECMP). An existing route to dst is replaced, so Route also moves one.
func (l *Lab) Route(ns, dst string, via ...string) {
	l.t.Helper()
	if len(via) == 0 {
		l.t.Fatalf("netlab: route to %s in %s without a gateway", dst, ns)
	}
	var is6 []bool
	for _, v := range via {
		a, err := netip.ParseAddr(v)
		if err != nil {
			l.t.Fatalf("netlab: gateway %q for %s in %s: %v", v, dst, ns, err)
		}
		is6 = append(is6, a.Is6())
	}
	if dst != "default" {
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			l.t.Fatalf("netlab: route destination %q in %s: want \"default\" or a prefix: %v", dst, ns, err)
		}
		is6 = append(is6, p.Addr().Is6())
	}
	for _, b := range is6 {
		if b != is6[0] {
			l.t.Fatalf("netlab: route to %s via %s in %s mixes IPv4 and IPv6", dst, strings.Join(via, ", "), ns)
		}
	}
	family := "-4"
	if is6[0] {
		family = "-6"
	}
	args := []string{family, "route", "replace", dst}
	if len(via) == 1 {
		args = append(args, "via", via[0])
	} else {
		for _, v := range via {
			args = append(args, "nexthop", "via", v)
		}
	}
	l.IP(ns, args...)
}

// MAC is the hardware address of interface dev in ns, e.g. the router port
// a load balancer node sends its frames to.
func (l *Lab) MAC(ns, dev string) net.HardwareAddr {
	l.t.Helper()
	var hw net.HardwareAddr
	var err error
	l.MustCall(ns, func() {
		var iface *net.Interface
		if iface, err = net.InterfaceByName(dev); err == nil {
			hw = iface.HardwareAddr
		}
	})
	if err != nil {
		l.t.Fatalf("netlab: interface %s in %s: %v", dev, ns, err)
	}
	return hw
}

package dhcp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// offerHold is how long an offered address waits for the client's
// request before another client may get it.
const offerHold = time.Minute

// leases are full mode's addresses, in memory: a lab's leases are
// renewed within minutes of a restart, and a client whose address we
// forgot asks again.
type leases struct {
	cfg    LeaseConfig
	server netip.Addr

	mu    sync.Mutex
	byMAC map[string]lease
}

type lease struct {
	addr      netip.Addr
	expires   time.Time
	committed bool // acknowledged, not only offered
}

func newLeases(cfg LeaseConfig, server netip.Addr) (*leases, error) {
	switch {
	case !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4():
		return nil, fmt.Errorf("lease subnet %v: want an IPv4 prefix", cfg.Subnet)
	case !cfg.Subnet.Contains(cfg.First) || !cfg.Subnet.Contains(cfg.Last) || cfg.Last.Less(cfg.First):
		return nil, fmt.Errorf("lease range %v-%v: want two addresses of %v, the first not after the last", cfg.First, cfg.Last, cfg.Subnet)
	case cfg.Duration < time.Minute:
		return nil, errors.New("lease time: want a minute or more")
	}
	return &leases{cfg: cfg, server: server, byMAC: map[string]lease{}}, nil
}

// offer is the client's address: the one it holds, or a free one.
func (l *leases) offer(mac string) (netip.Addr, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	taken := map[netip.Addr]bool{l.server: true, l.cfg.Router: true}
	for m, cur := range l.byMAC {
		if now.Before(cur.expires) && m != mac {
			taken[cur.addr] = true
		}
	}
	if cur, ok := l.byMAC[mac]; ok && !taken[cur.addr] {
		// A client that rebooted, or whose lease ran out while no one
		// else wanted the address, gets its address back.
		if hold := now.Add(offerHold); cur.expires.Before(hold) {
			cur.expires = hold
			l.byMAC[mac] = cur
		}
		return cur.addr, true
	}
	for a := l.cfg.First; !l.cfg.Last.Less(a); a = a.Next() {
		if !taken[a] {
			l.byMAC[mac] = lease{addr: a, expires: now.Add(offerHold)}
			return a, true
		}
	}
	return netip.Addr{}, false
}

// commit acknowledges addr to mac, if that is the address offered to or
// held by it.
func (l *leases) commit(mac string, addr netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, ok := l.byMAC[mac]
	if !ok || cur.addr != addr || (!cur.committed && time.Now().After(cur.expires)) {
		return false
	}
	l.byMAC[mac] = lease{addr: addr, expires: time.Now().Add(l.cfg.Duration), committed: true}
	return true
}

// holds tells whether mac has an acknowledged lease, expired or not: a
// client renewing late still gets its address.
func (l *leases) holds(mac string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byMAC[mac].committed
}

// forgetOffer frees an address offered to a client that chose another
// server.
func (l *leases) forgetOffer(mac string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.byMAC[mac]; ok && !cur.committed {
		delete(l.byMAC, mac)
	}
}

func (l *leases) release(mac string, addr net.IP) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.byMAC[mac]; ok && net.IP(cur.addr.AsSlice()).Equal(addr) {
		delete(l.byMAC, mac)
	}
}

// fill puts the address and the network's options into a reply.
func (l *leases) fill(reply *dhcpv4.DHCPv4, addr netip.Addr) {
	reply.YourIPAddr = addr.AsSlice()
	reply.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(l.cfg.Subnet.Bits(), 32)))
	reply.UpdateOption(dhcpv4.OptIPAddressLeaseTime(l.cfg.Duration))
	if l.cfg.Router.IsValid() {
		reply.UpdateOption(dhcpv4.OptRouter(l.cfg.Router.AsSlice()))
	}
	if len(l.cfg.DNS) > 0 {
		dns := make([]net.IP, len(l.cfg.DNS))
		for i, a := range l.cfg.DNS {
			dns[i] = a.AsSlice()
		}
		reply.UpdateOption(dhcpv4.OptDNS(dns...))
	}
}

package bgp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Peer is one BGP neighbour of the node, usually a top-of-rack switch.
type Peer struct {
	Address netip.Addr
	ASN     uint32
	// Port is the peer's BGP port; 0 means 179.
	Port uint16
	// External peers carry traffic from outside the cluster's networks:
	// they receive only public VIPs, internal peers receive every VIP.
	External bool
}

// Config is what a node's speaker needs to know about itself and its
// peers.
type Config struct {
	// ASN is the node's own AS number.
	ASN uint32
	// RouterID is the node's BGP identifier, an IPv4 address.
	RouterID netip.Addr
	// ListenPort is where the speaker accepts sessions: 0 means 179, -1
	// means it does not listen and only connects out to its peers.
	ListenPort int32
	Peers      []Peer
	// NextHopV4 and NextHopV6 are the node's own addresses that peers
	// forward VIP traffic to. A family without a next hop cannot be
	// announced.
	NextHopV4 netip.Addr
	NextHopV6 netip.Addr
	// HoldTime is the BGP hold time offered to peers; 0 means 90s. A
	// shorter one lets a ToR drop a dead node's routes sooner.
	HoldTime time.Duration
	// ConnectRetry is how long the speaker waits between attempts to
	// (re)connect a session; 0 means 5s, so a node comes back quickly after
	// a ToR reboot instead of gobgp's default two minutes. (After a
	// session drops, gobgp first idles a fixed 5s.)
	ConnectRetry time.Duration
	// Logger receives gobgp's own log lines; nil discards them.
	Logger *slog.Logger
}

const (
	defaultHoldTime     = 90 * time.Second
	defaultConnectRetry = 5 * time.Second
	// minHoldTime is the smallest non-zero hold time RFC 4271 allows.
	minHoldTime = 3 * time.Second
	maxHoldTime = 65535 * time.Second
	// asTrans stands in for 4-byte AS numbers towards old speakers
	// (RFC 6793); no real AS has it.
	asTrans = 23456
)

// validate says what is wrong with a config, all problems at once so that
// an operator fixes them in one go.
func (c Config) validate() error {
	var errs []error
	if err := checkASN(c.ASN); err != nil {
		errs = append(errs, fmt.Errorf("local ASN: %w", err))
	}
	if !c.RouterID.IsValid() || !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		errs = append(errs, fmt.Errorf("router ID %q: want a non-zero IPv4 address", addrString(c.RouterID)))
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		errs = append(errs, fmt.Errorf("listen port %d: want 0 (179), -1 (do not listen) or a port number", c.ListenPort))
	}
	if !c.NextHopV4.IsValid() && !c.NextHopV6.IsValid() {
		errs = append(errs, errors.New("no next hop: set NextHopV4, NextHopV6 or both"))
	}
	if c.NextHopV4.IsValid() && !usableUnicast(c.NextHopV4, true) {
		errs = append(errs, fmt.Errorf("IPv4 next hop %s: want a unicast IPv4 address without zone", c.NextHopV4))
	}
	if c.NextHopV6.IsValid() && !usableUnicast(c.NextHopV6, false) {
		errs = append(errs, fmt.Errorf("IPv6 next hop %s: want a unicast IPv6 address without zone", c.NextHopV6))
	}
	if c.HoldTime != 0 && (c.HoldTime < minHoldTime || c.HoldTime > maxHoldTime) {
		errs = append(errs, fmt.Errorf("hold time %s: want 0 (90s) or between %s and %s", c.HoldTime, minHoldTime, maxHoldTime))
	}
	if c.ConnectRetry < 0 || (c.ConnectRetry > 0 && c.ConnectRetry < time.Second) {
		errs = append(errs, fmt.Errorf("connect retry %s: want 0 (5s) or at least 1s", c.ConnectRetry))
	}
	if len(c.Peers) == 0 {
		errs = append(errs, errors.New("no peers: a speaker without peers announces nowhere"))
	}
	seen := map[netip.Addr]bool{}
	for i, p := range c.Peers {
		if !p.Address.IsValid() || p.Address.Zone() != "" || p.Address.IsUnspecified() || p.Address.Is4In6() {
			errs = append(errs, fmt.Errorf("peer %d: address %q is not a usable IP address", i, addrString(p.Address)))
			continue
		}
		if seen[p.Address] {
			errs = append(errs, fmt.Errorf("peer %s listed twice", p.Address))
		}
		seen[p.Address] = true
		if err := checkASN(p.ASN); err != nil {
			errs = append(errs, fmt.Errorf("peer %s ASN: %w", p.Address, err))
		}
		if p.Address == c.NextHopV4 || p.Address == c.NextHopV6 {
			errs = append(errs, fmt.Errorf("peer %s is the node's own next hop", p.Address))
		}
	}
	return errors.Join(errs...)
}

func checkASN(asn uint32) error {
	switch asn {
	case 0:
		return errors.New("0 is not an AS number")
	case asTrans:
		return fmt.Errorf("%d is AS_TRANS, not a real AS number", asTrans)
	}
	return nil
}

func usableUnicast(a netip.Addr, v4 bool) bool {
	if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() || a.Is4In6() {
		return false
	}
	return a.Is4() == v4
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// withDefaults fills in what the operator left at zero.
func (c Config) withDefaults() Config {
	if c.HoldTime == 0 {
		c.HoldTime = defaultHoldTime
	}
	if c.ConnectRetry == 0 {
		c.ConnectRetry = defaultConnectRetry
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

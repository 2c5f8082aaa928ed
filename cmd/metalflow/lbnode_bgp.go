//go:build !agent

package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/metalflow/metalflow/lbnode/bgp"
)

// bgpFlags configure the node's BGP speaker: how its VIPs reach the
// top-of-rack switches. Without --bgp-asn the node announces nothing.
type bgpFlags struct {
	asn        uint
	routerID   string
	listenPort int
	nextHopV4  string
	nextHopV6  string
	holdTime   time.Duration
	peers      bgpPeerList
}

// bgpPeerList is the repeatable --bgp-peer ADDR,ASN[,external][,port=N].
type bgpPeerList []bgp.Peer

func (l *bgpPeerList) String() string {
	parts := make([]string, 0, len(*l))
	for _, p := range *l {
		parts = append(parts, fmt.Sprintf("%s,%d", p.Address, p.ASN))
	}
	return strings.Join(parts, " ")
}

func (l *bgpPeerList) Set(v string) error {
	fields := strings.Split(v, ",")
	if len(fields) < 2 {
		return fmt.Errorf("%q: want ADDR,ASN[,external][,port=N]", v)
	}
	addr, err := netip.ParseAddr(strings.TrimSpace(fields[0]))
	if err != nil {
		return fmt.Errorf("%q: peer address: %w", v, err)
	}
	asn, err := strconv.ParseUint(strings.TrimSpace(fields[1]), 10, 32)
	if err != nil {
		return fmt.Errorf("%q: peer AS number: %w", v, err)
	}
	p := bgp.Peer{Address: addr, ASN: uint32(asn)}
	for _, opt := range fields[2:] {
		opt = strings.TrimSpace(opt)
		switch {
		case opt == "external":
			p.External = true
		case strings.HasPrefix(opt, "port="):
			port, err := strconv.ParseUint(strings.TrimPrefix(opt, "port="), 10, 16)
			if err != nil || port == 0 {
				return fmt.Errorf("%q: %s is not a TCP port", v, opt)
			}
			p.Port = uint16(port)
		default:
			return fmt.Errorf("%q: unknown option %q (external, port=N)", v, opt)
		}
	}
	*l = append(*l, p)
	return nil
}

func (b *bgpFlags) register(fs *flag.FlagSet) {
	fs.UintVar(&b.asn, "bgp-asn", 0, "with --temporal, this node's AS number; 0 runs without BGP (VIPs are programmed but announced by nobody)")
	fs.StringVar(&b.routerID, "bgp-router-id", "", "with --bgp-asn, the BGP identifier (an IPv4 address; default --bgp-next-hop-v4)")
	fs.IntVar(&b.listenPort, "bgp-listen-port", -1, "with --bgp-asn, port to accept BGP sessions on (-1: only connect out to the peers)")
	fs.StringVar(&b.nextHopV4, "bgp-next-hop-v4", "", "with --bgp-asn, this node's IPv4 address the peers forward IPv4 VIP traffic to")
	fs.StringVar(&b.nextHopV6, "bgp-next-hop-v6", "", "with --bgp-asn, this node's IPv6 address the peers forward IPv6 VIP traffic to")
	fs.DurationVar(&b.holdTime, "bgp-hold-time", 9*time.Second, "with --bgp-asn, BGP hold time: how soon a ToR drops a dead node's routes")
	fs.Var(&b.peers, "bgp-peer", "with --bgp-asn, a BGP peer ADDR,ASN[,external][,port=N]; repeat for each (external peers get public VIPs only)")
}

// speaker builds the BGP speaker the flags describe, or nil without BGP.
// It checks everything before anything starts.
func (b *bgpFlags) speaker(log *slog.Logger) (*bgp.Speaker, error) {
	if b.asn == 0 {
		if len(b.peers) > 0 || b.nextHopV4 != "" || b.nextHopV6 != "" || b.routerID != "" {
			return nil, errors.New("--bgp-peer, --bgp-next-hop-* and --bgp-router-id need --bgp-asn")
		}
		return nil, nil
	}
	if b.asn > 1<<32-1 {
		return nil, fmt.Errorf("--bgp-asn %d is not a 32-bit AS number", b.asn)
	}
	cfg := bgp.Config{ASN: uint32(b.asn), ListenPort: int32(b.listenPort), Peers: b.peers, HoldTime: b.holdTime, Logger: log}
	var err error
	parse := func(flagName, v string) netip.Addr {
		if v == "" || err != nil {
			return netip.Addr{}
		}
		a, perr := netip.ParseAddr(v)
		if perr != nil {
			err = fmt.Errorf("--%s %q: %w", flagName, v, perr)
		}
		return a
	}
	cfg.NextHopV4 = parse("bgp-next-hop-v4", b.nextHopV4)
	cfg.NextHopV6 = parse("bgp-next-hop-v6", b.nextHopV6)
	cfg.RouterID = parse("bgp-router-id", b.routerID)
	if err != nil {
		return nil, err
	}
	if !cfg.RouterID.IsValid() {
		cfg.RouterID = cfg.NextHopV4
	}
	return bgp.New(cfg)
}

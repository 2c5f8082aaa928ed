//go:build !agent

package main

import (
	"flag"
	"io"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/agent"
	"github.com/metalflow/metalflow/lbnode/bgp"
)

func parseBGPFlags(t *testing.T, args ...string) (*bgpFlags, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var b bgpFlags
	b.register(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &b, nil
}

func TestBGPFlags(t *testing.T) {
	// The speaker is what the agent announces through.
	var _ agent.Announcer = (*bgp.Speaker)(nil)

	b, err := parseBGPFlags(t)
	require.NoError(t, err)
	s, err := b.speaker(nil)
	require.NoError(t, err)
	require.Nil(t, s, "no --bgp-asn: no BGP")

	b, err = parseBGPFlags(t, "--bgp-asn", "65010", "--bgp-next-hop-v4", "10.99.0.11",
		"--bgp-peer", "10.99.0.1,65000", "--bgp-peer", "2001:db8::1,65100,external,port=1790")
	require.NoError(t, err)
	require.Equal(t, bgpPeerList{
		{Address: netip.MustParseAddr("10.99.0.1"), ASN: 65000},
		{Address: netip.MustParseAddr("2001:db8::1"), ASN: 65100, External: true, Port: 1790},
	}, b.peers)
	s, err = b.speaker(nil)
	require.NoError(t, err)
	require.NotNil(t, s)

	for _, args := range [][]string{
		{"--bgp-peer", "10.0.0.1"},
		{"--bgp-peer", "10.0.0.1,asn"},
		{"--bgp-peer", "nohost,65000"},
		{"--bgp-peer", "10.0.0.1,65000,internal"},
		{"--bgp-peer", "10.0.0.1,65000,port=0"},
	} {
		_, err := parseBGPFlags(t, args...)
		require.Error(t, err, "%v", args)
	}
	for _, args := range [][]string{
		{"--bgp-peer", "10.0.0.1,65000"},                                                 // peers without an AS of our own
		{"--bgp-asn", "65010", "--bgp-next-hop-v4", "not-an-ip"},                         // bad next hop
		{"--bgp-asn", "65010", "--bgp-peer", "10.0.0.1,65000"},                           // no router ID, no next hop
		{"--bgp-asn", "65010", "--bgp-router-id", "2001:db8::1"},                         // router ID must be IPv4
		{"--bgp-asn", "8589934592", "--bgp-next-hop-v4", "10.0.0.2"},                     // beyond 32 bits
		{"--bgp-asn", "65010", "--bgp-next-hop-v4", "10.0.0.2", "--bgp-hold-time", "1s"}, // below RFC 4271's minimum
	} {
		b, err := parseBGPFlags(t, args...)
		if err == nil {
			_, err = b.speaker(nil)
		}
		require.Error(t, err, "%v", args)
	}
}

func TestVIPPoolFlags(t *testing.T) {
	p := provisioningFlags{vipPoolIntern: "10.255.0.0/24", vipPoolPublic: "2001:db8:100::/120"}
	require.NoError(t, p.parsePools())
	require.Equal(t, netip.MustParsePrefix("2001:db8:100::/120"), p.pools.Public)
	for _, bad := range []provisioningFlags{
		{vipPoolIntern: "10.255.0.1/24", vipPoolPublic: "198.51.100.0/24"},
		{vipPoolIntern: "10.255.0.0/24", vipPoolPublic: "public"},
		{vipPoolIntern: "", vipPoolPublic: "198.51.100.0/24"},
	} {
		require.Error(t, bad.parsePools(), "%+v", bad)
	}
}

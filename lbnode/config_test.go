package lbnode

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const issueExample = `
nextHopMAC: "02:00:00:00:00:01"   # optional
guePort: 7777
encapSourceV4: 172.31.0.0
flowTableSize: 1024
vips:
  - address: 10.200.0.10
    port: 80
    protocol: tcp
    backends:
      - {address: 10.0.1.11, weight: 100}
      - {address: 10.0.1.12, weight: 100, state: drain}
  - address: 2001:db8::10
    port: 0
    protocol: udp
    flags: [hash-no-source-port, no-flow-table, gue]
    backends:
      - {address: "fc00:1::11"}
`

func TestParseConfigReadsTheDocumentedLayout(t *testing.T) {
	d, err := ParseConfig([]byte(issueExample))
	require.NoError(t, err)
	assert.Equal(t, mac("02:00:00:00:00:01"), d.NextHopMAC)
	require.Len(t, d.Services, 2)
	assert.Equal(t, tcpVIP("10.200.0.10", 80, 0), d.Services[0].VIP)
	assert.Equal(t, []Backend{
		{Addr: addr("10.0.1.11"), Weight: 100},
		{Addr: addr("10.0.1.12"), Weight: 100, State: BackendDrain},
	}, d.Services[0].Backends)
	assert.Equal(t, udpVIP("2001:db8::10", 0, HashNoSourcePort|NoFlowTable|EncapGUE), d.Services[1].VIP)
	assert.Equal(t, uint16(7777), d.GUEPort)
	assert.Equal(t, addr("172.31.0.0"), d.EncapSourceV4)
	assert.False(t, d.EncapSourceV6.IsValid())
	assert.Equal(t, 1024, d.FlowTableSize)
	assert.Equal(t, uint32(DefaultBackendWeight), d.Services[1].Backends[0].Weight)
}

func TestParseConfigRejectsBadInput(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown key":       "vips: []\nnextHop: x\n",
		"bad mac":           "nextHopMAC: 02:00\n",
		"bad vip address":   "vips: [{address: 10.200.0.300, port: 80, protocol: tcp}]\n",
		"bad protocol":      "vips: [{address: 10.200.0.10, port: 80, protocol: sctp}]\n",
		"port out of range": "vips: [{address: 10.200.0.10, port: 70000, protocol: tcp}]\n",
		"duplicate vip":     "vips: [{address: 10.200.0.10, port: 80, protocol: tcp}, {address: 10.200.0.10, port: 80, protocol: tcp}]\n",
		"duplicate backend": "vips: [{address: 10.200.0.10, port: 80, protocol: tcp, backends: [{address: 10.0.1.1}, {address: 10.0.1.1}]}]\n",
		"bad backend":       "vips: [{address: 10.200.0.10, port: 80, protocol: tcp, backends: [{address: nope}]}]\n",
		"bad state":         "vips: [{address: 10.200.0.10, port: 80, protocol: tcp, backends: [{address: 10.0.1.1, state: off}]}]\n",
		"negative weight":   "vips: [{address: 10.200.0.10, port: 80, protocol: tcp, backends: [{address: 10.0.1.1, weight: -1}]}]\n",
		"bad flag":          "vips: [{address: 10.200.0.10, port: 80, protocol: tcp, flags: [fast]}]\n",
		"v6 encap source":   "encapSourceV4: fd00::1\n",
		"v4 encap source":   "encapSourceV6: 10.0.0.1\n",
		"negative table":    "flowTableSize: -1\n",
		"clashing flags":    "vips: [{address: 10.200.0.10, port: 80, protocol: tcp, flags: [hash-no-source-port, hash-destination-port-only]}]\n",
	} {
		_, err := ParseConfig([]byte(doc))
		assert.Error(t, err, name)
	}
}

func TestApplyConvergesAndRejectsBadListsWhole(t *testing.T) {
	n := openTestNode(t, Config{})
	d, err := ParseConfig([]byte(issueExample))
	require.NoError(t, err)
	require.NoError(t, n.Apply(d.Services))
	assert.Len(t, n.VIPs(), 2)
	// The drained backend owns no slot, so every new flow reaches .11.
	for p := uint16(1000); p < 1020; p++ {
		assert.Equal(t, addr("10.0.1.11"), send(t, n, syn(p, "10.200.0.10")))
	}

	next := []Service{{VIP: tcpVIP("10.200.0.10", 80, 0), Backends: backendsAt("10.0.1.12", "10.0.1.13")}}
	bad := append(next, Service{VIP: tcpVIP("10.200.0.11", 80, 0), Backends: []Backend{{Addr: addr("10.0.1.14"), Weight: 5_000_000}}})
	require.Error(t, n.Apply(bad))
	assert.Len(t, n.VIPs(), 2, "a bad list changes nothing")
	assert.Equal(t, addr("10.0.1.11"), send(t, n, syn(1000, "10.200.0.10")))

	require.NoError(t, n.Apply(next))
	assert.Equal(t, []VIP{next[0].VIP}, n.VIPs())
	got, err := n.Backends(next[0].VIP.VIPKey)
	require.NoError(t, err)
	assert.Len(t, got, 2)
	assert.Len(t, n.backends, 2, "backends no VIP lists are released")
	assert.NotEqual(t, addr("10.0.1.11"), send(t, n, syn(1000, "10.200.0.10")))
}

func TestWriteStatsNamesEveryCounter(t *testing.T) {
	var buf bytes.Buffer
	s := Stats{
		VIPs:     map[VIPKey]Counter{tcpVIP("10.200.0.10", 80, 0).VIPKey: {Packets: 3, Bytes: 180}},
		Backends: map[netip.Addr]Counter{addr("10.0.1.11"): {Packets: 2, Bytes: 120}},
		Drops:    map[DropReason]Counter{DropFragment: {Packets: 1}},
	}
	require.NoError(t, WriteStats(&buf, s))
	out := buf.String()
	assert.Contains(t, out, "10.200.0.10:80/tcp")
	assert.Contains(t, out, "10.0.1.11")
	assert.Contains(t, out, "fragment")
	assert.Contains(t, out, "no_backend")
}

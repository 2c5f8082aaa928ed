package lbnode

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/bpf"
	"github.com/metalflow/metalflow/internal/netlab"
)

func TestPinnedDataPlaneIsAdoptedAfterRestart(t *testing.T) {
	requireBPF(t)
	l := netlab.New(t)
	ns := l.Namespace("lb")
	dev, _ := l.Veth(ns, "lb0", ns, "lb1")
	cfg := Config{Interface: dev, Mode: AttachGeneric, PinRoot: bpffs(t), NextHopMAC: macs().nextHop, Seed: testSeed}

	var first *Node
	var err error
	l.MustCall(ns, func() { first, err = Open(cfg) })
	require.NoError(t, err)
	assert.Equal(t, AttachGeneric, first.Mode())
	assert.False(t, first.Adopted())
	s := service{tcpVIP("10.200.0.10", 80, HashNoSourcePort), []Backend{
		{Addr: addr("10.0.1.11"), Weight: 100, State: BackendActive},
		{Addr: addr("10.0.1.12"), Weight: 50, State: BackendDrain},
		{Addr: addr("fc00:1::13"), Weight: 7, State: BackendActive},
	}}
	setup(t, first, []service{s})
	in := ack(40000, "10.200.0.10")
	before := send(t, first, in)
	require.NoError(t, first.Close())

	assert.Contains(t, l.IP(ns, "link", "show", dev), "xdpgeneric", "the program stays attached while no process holds it")

	var second *Node
	l.MustCall(ns, func() { second, err = Open(cfg) })
	require.NoError(t, err)
	t.Cleanup(func() { _ = second.Close() })
	assert.True(t, second.Adopted())
	assert.Equal(t, []VIP{s.vip}, second.VIPs())
	got, err := second.Backends(s.vip.VIPKey)
	require.NoError(t, err)
	assert.Equal(t, []Backend{s.backends[0], s.backends[1], s.backends[2]}, got)
	assert.Equal(t, before, send(t, second, in), "the adopted data plane forwards as before")
	st, err := second.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), st.VIPs[s.vip.VIPKey].Packets, "counters survive the restart")

	// Adopting with a different seed would move every flow: refuse.
	other := cfg
	other.Seed = testSeed + 1
	l.MustCall(ns, func() { _, err = Open(other) })
	assert.ErrorContains(t, err, "seed")

	require.NoError(t, second.SetBackends(s.vip.VIPKey, s.backends[:1]))
	assert.Equal(t, addr("10.0.1.11"), send(t, second, in))

	require.NoError(t, second.Detach())
	assert.False(t, strings.Contains(l.IP(ns, "link", "show", dev), "xdp"), "detached")
	_, err = os.Stat(filepath.Join(cfg.PinRoot, dev))
	assert.True(t, os.IsNotExist(err), "pins removed")

	// An operator's --stats and --detach work on the pins alone.
	var third *Node
	l.MustCall(ns, func() { third, err = Open(cfg) })
	require.NoError(t, err)
	assert.False(t, third.Adopted())
	setup(t, third, []service{s})
	send(t, third, in)
	require.NoError(t, third.Close())
	st, err = ReadPinnedStats(cfg.PinRoot, dev)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.VIPs[s.vip.VIPKey].Packets)
	require.NoError(t, DetachPinned(cfg.PinRoot, dev))
	assert.NotContains(t, l.IP(ns, "link", "show", dev), "xdp")
	_, err = ReadPinnedStats(cfg.PinRoot, dev)
	assert.Error(t, err)
}

func TestOpenRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"ring size not prime": {RingSize: 65536},
		"tiny mtu":            {MTU: 500},
		"bad mode":            {Mode: "turbo"},
		"interface, no mac":   {Interface: "lo"},
		"short mac":           {NextHopMAC: []byte{1, 2, 3}},
		"v6 as v4 source":     {EncapSourceV4: addr("fd00::1")},
	} {
		_, err := Open(cfg)
		assert.Error(t, err, name)
	}
}

// --stats of a new build must still read a data plane an older build pinned,
// whose drop counters stop before the reasons added since.
func TestStatsReadOlderDropCounters(t *testing.T) {
	requireBPF(t)
	n := viewPinnedNode(t.TempDir(), "eth0")
	t.Cleanup(func() { _ = n.objs.Close() })
	perCPU := func(entries uint32) *ebpf.Map {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: entries})
		require.NoError(t, err)
		return m
	}
	n.objs.DropStats = perCPU(uint32(DropMalformed))
	n.objs.EventStats = perCPU(evCount)
	require.NoError(t, n.objs.DropStats.Update(uint32(DropFragment), []bpf.LbCounter{{Packets: 3}}, ebpf.UpdateAny))
	st, err := n.Stats()
	require.NoError(t, err)
	assert.Equal(t, map[DropReason]Counter{DropFragment: {Packets: 3}}, st.Drops)
}

// A data plane pinned by a build with another map layout (layout 1 had no
// "malformed" drop counter) is not adopted: the operator detaches it, and
// the next start loads this build's program.
func TestAdoptRefusesAnotherMapLayout(t *testing.T) {
	requireBPF(t)
	l := netlab.New(t)
	ns := l.Namespace("lb")
	dev, _ := l.Veth(ns, "lb0", ns, "lb1")
	cfg := Config{Interface: dev, Mode: AttachGeneric, PinRoot: bpffs(t), NextHopMAC: macs().nextHop, Seed: testSeed}

	var first *Node
	var err error
	l.MustCall(ns, func() { first, err = Open(cfg) })
	require.NoError(t, err)
	var running bpf.LbLbConfig
	require.NoError(t, first.objs.Config.Lookup(uint32(0), &running))
	running.AbiVersion = 1
	require.NoError(t, first.objs.Config.Put(uint32(0), running))
	require.NoError(t, first.Close())

	l.MustCall(ns, func() { _, err = Open(cfg) })
	assert.ErrorContains(t, err, "map layout 1")

	require.NoError(t, DetachPinned(cfg.PinRoot, dev))
	var second *Node
	l.MustCall(ns, func() { second, err = Open(cfg) })
	require.NoError(t, err)
	assert.False(t, second.Adopted())
	require.NoError(t, second.Detach())
}

// An interface deleted and re-created under the same name (a re-created
// bond, VF or veth) gets a new ifindex; the program pinned for the old one
// is attached to nothing. A node started on the new interface must attach
// afresh and say why, not adopt a data plane that forwards nothing; the
// backend's decap program likewise.
func TestPinsOfAReplacedInterfaceAreDiscarded(t *testing.T) {
	requireBPF(t)
	l := netlab.New(t)
	ns := l.Namespace("lb")
	dev, peer := l.Veth(ns, "lb0", ns, "lb1")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := Config{Interface: dev, Mode: AttachGeneric, PinRoot: bpffs(t), NextHopMAC: macs().nextHop, Seed: testSeed, Logger: log}
	decapCfg := DecapConfig{Interface: peer, Mode: AttachGeneric, PinRoot: cfg.PinRoot, Logger: log}

	var (
		first    *Node
		decap    *Decap
		oldIndex int
		err      error
	)
	l.MustCall(ns, func() {
		first, err = Open(cfg)
		require.NoError(t, err)
		decap, err = AttachDecap(decapCfg)
		require.NoError(t, err)
		iface, err := net.InterfaceByName(dev)
		require.NoError(t, err)
		oldIndex = iface.Index
	})
	s := service{tcpVIP("10.200.0.10", 80, 0), []Backend{{Addr: addr("10.0.1.11"), Weight: 100, State: BackendActive}}}
	setup(t, first, []service{s})
	require.NoError(t, first.Close())
	require.NoError(t, decap.Close())

	l.IP(ns, "link", "del", dev)
	l.IP(ns, "link", "add", dev, "type", "veth", "peer", "name", peer)
	l.IP(ns, "link", "set", dev, "up")
	l.IP(ns, "link", "set", peer, "up")

	var second *Node
	var newIndex int
	l.MustCall(ns, func() {
		second, err = Open(cfg)
		require.NoError(t, err)
		decap, err = AttachDecap(decapCfg)
		require.NoError(t, err)
		iface, err := net.InterfaceByName(dev)
		require.NoError(t, err)
		newIndex = iface.Index
	})
	t.Cleanup(func() { _ = second.Detach() })
	t.Cleanup(func() { _ = decap.Detach() })
	require.NotEqual(t, oldIndex, newIndex)
	assert.False(t, second.Adopted(), "the old interface's pins are not adopted")
	attached, err := second.Attached()
	require.NoError(t, err)
	assert.True(t, attached, "the node runs on the interface there is now")
	assert.Contains(t, l.IP(ns, "link", "show", dev), "xdpgeneric")
	assert.Empty(t, second.VIPs(), "what the old data plane held is for its owner to apply again")
	assert.Contains(t, logs.String(), fmt.Sprintf("iface=%s pinned_ifindex=0 ifindex=%d", dev, newIndex))
	assert.Equal(t, AttachGeneric, decap.Mode(), "decap attached afresh, not adopted")
	assert.Contains(t, l.IP(ns, "link", "show", peer), "xdpgeneric")

	// The fresh pins are adopted by the next start as usual.
	require.NoError(t, second.Close())
	l.MustCall(ns, func() { second, err = Open(cfg) })
	require.NoError(t, err)
	assert.True(t, second.Adopted())
}

package lbnode

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// backendOf reads the backend address out of an encapsulated frame.
func backendOf(t testing.TB, out []byte) netip.Addr {
	t.Helper()
	switch binary.BigEndian.Uint16(out[12:]) {
	case ethIPv4:
		return netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
	case ethIPv6:
		return netip.AddrFrom16([16]byte(out[14+24 : 14+40]))
	}
	t.Fatalf("not an IP frame: %x", out[:14])
	return netip.Addr{}
}

// send runs one frame through the balancer and returns the backend it went
// to, failing unless it was encapsulated.
func send(t testing.TB, n *Node, in []byte) netip.Addr {
	t.Helper()
	verdict, out := run(t, n.Program(), in)
	require.Equal(t, uint32(xdpTX), verdict)
	return backendOf(t, out)
}

func ack(sport uint16, vip string) []byte {
	return tcp4(client4(), addr(vip), sport, 80, tcpACK, v4opts{df: true}, 0)
}

func syn(sport uint16, vip string) []byte {
	return tcp4(client4(), addr(vip), sport, 80, tcpSYN, v4opts{df: true}, 0)
}

func TestHashFlagsDecideWhatSpreads(t *testing.T) {
	n := openTestNode(t, Config{})
	s := fixtureServices()
	setup(t, n, []service{s["v4tcp"], s["noSrcPort"], s["dportOnly"]})
	distinct := func(frames func(i int) []byte) int {
		seen := map[netip.Addr]bool{}
		for i := 0; i < 64; i++ {
			seen[send(t, n, frames(i))] = true
		}
		return len(seen)
	}
	assert.Equal(t, 3, distinct(func(i int) []byte { return ack(uint16(30000+i), "10.200.0.10") }),
		"by default one client's connections spread over backends")
	assert.Equal(t, 1, distinct(func(i int) []byte { return ack(uint16(30000+i), "10.200.0.20") }),
		"without the source port, one client's connections share a backend")
	assert.Greater(t, distinct(func(i int) []byte {
		return tcp4(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), addr("10.200.0.20"), 1000, 80, tcpACK, v4opts{}, 0)
	}), 1, "without the source port, different clients still spread")
	assert.Equal(t, 1, distinct(func(i int) []byte {
		return tcp4(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), addr("10.200.0.21"), uint16(1000+i), 80, tcpACK, v4opts{}, 0)
	}), "hashing the destination port only sends every client to one backend")
}

func TestWeightsHoldThroughTheDataPlane(t *testing.T) {
	n := openTestNode(t, Config{})
	setup(t, n, []service{fixtureServices()["weighted"]})
	counts := map[netip.Addr]int{}
	const flows = 4000
	for i := 0; i < flows; i++ {
		src := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		counts[send(t, n, tcp4(src, addr("10.200.0.40"), uint16(1024+i), 80, tcpSYN, v4opts{}, 0))]++
	}
	share := float64(counts[addr("10.0.1.42")]) / flows
	t.Logf("weight 3 backend got %.3f of %d flows (want 0.75)", share, flows)
	assert.InDelta(t, 0.75, share, 0.04)
}

// flowsOn finds client ports whose flows Maglev gives to backend b.
func flowsOn(t *testing.T, s service, b netip.Addr, want int) []uint16 {
	var ports []uint16
	for p := uint16(20000); len(ports) < want; p++ {
		f := flowTuple{Src: client4(), Dst: s.vip.Addr, SPort: p, DPort: 80, Protocol: ProtocolTCP}
		if expectBackend(t, s, f) == b {
			ports = append(ports, p)
		}
	}
	return ports
}

func TestDrainKeepsEstablishedFlowsWithFlowTable(t *testing.T) {
	n := openTestNode(t, Config{})
	s := service{tcpVIP("10.200.0.50", 80, 0), backendsAt("10.0.1.11", "10.0.1.12", "10.0.1.13")}
	setup(t, n, []service{s})
	drained := addr("10.0.1.12")
	ports := flowsOn(t, s, drained, 20)
	for _, p := range ports {
		require.Equal(t, drained, send(t, n, ack(p, "10.200.0.50")))
	}

	s.backends[1].State = BackendDrain
	require.NoError(t, n.SetBackends(s.vip.VIPKey, s.backends))
	for _, p := range ports {
		assert.Equal(t, drained, send(t, n, ack(p, "10.200.0.50")), "established flow %d stays on the draining backend", p)
	}
	for _, p := range ports {
		assert.NotEqual(t, drained, send(t, n, syn(p+10000, "10.200.0.50")), "a new connection avoids the draining backend")
	}
	// A SYN is a new connection even when its 5-tuple is remembered.
	assert.NotEqual(t, drained, send(t, n, syn(ports[0], "10.200.0.50")))

	st, err := n.Stats()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, st.FlowTableHits, uint64(len(ports)))
	got, err := n.Backends(s.vip.VIPKey)
	require.NoError(t, err)
	assert.Equal(t, BackendDrain, got[1].State)
}

func TestDrainMovesFlowsWithoutFlowTable(t *testing.T) {
	n := openTestNode(t, Config{})
	s := service{tcpVIP("10.200.0.51", 80, NoFlowTable), backendsAt("10.0.1.11", "10.0.1.12", "10.0.1.13")}
	setup(t, n, []service{s})
	drained := addr("10.0.1.12")
	ports := flowsOn(t, s, drained, 20)
	for _, p := range ports {
		require.Equal(t, drained, send(t, n, ack(p, "10.200.0.51")))
	}
	s.backends[1].Weight = 0
	require.NoError(t, n.SetBackends(s.vip.VIPKey, s.backends))
	for _, p := range ports {
		assert.NotEqual(t, drained, send(t, n, ack(p, "10.200.0.51")), "without a flow table nothing holds the flow")
	}
	st, err := n.Stats()
	require.NoError(t, err)
	assert.Zero(t, st.FlowTableHits+st.FlowTableMisses, "the flow table is not consulted")
}

func TestRemovingBackendMovesOnlyItsFlows(t *testing.T) {
	for _, flags := range []VIPFlags{0, NoFlowTable} {
		t.Run(map[VIPFlags]string{0: "flow table", NoFlowTable: "maglev only"}[flags], func(t *testing.T) {
			n := openTestNode(t, Config{})
			s := service{tcpVIP("10.200.0.52", 80, flags), backendsAt("10.0.1.11", "10.0.1.12", "10.0.1.13", "10.0.1.14")}
			setup(t, n, []service{s})
			const flows = 2000
			before := make([]netip.Addr, flows)
			for i := range before {
				before[i] = send(t, n, ack(uint16(10000+i), "10.200.0.52"))
			}
			removed := addr("10.0.1.13")
			require.NoError(t, n.SetBackends(s.vip.VIPKey, backendsAt("10.0.1.11", "10.0.1.12", "10.0.1.14")))
			others, movedOthers := 0, 0
			for i := range before {
				after := send(t, n, ack(uint16(10000+i), "10.200.0.52"))
				if before[i] == removed {
					assert.NotEqual(t, removed, after)
					continue
				}
				others++
				if after != before[i] {
					movedOthers++
				}
			}
			t.Logf("%d of %d flows on remaining backends moved", movedOthers, others)
			if flags&NoFlowTable == 0 {
				assert.Zero(t, movedOthers, "the flow table holds every other flow")
			} else {
				assert.Less(t, float64(movedOthers)/float64(others), 0.05, "Maglev moves few other flows")
			}
		})
	}
}

func TestSYNFloodKeepsNewFlowsOutOfTheFlowTable(t *testing.T) {
	n := openTestNode(t, Config{SYNFloodThreshold: 5})
	s := service{tcpVIP("10.200.0.53", 80, 0), backendsAt("10.0.1.11", "10.0.1.12", "10.0.1.13")}
	setup(t, n, []service{s})
	for i := 0; i < 20; i++ {
		send(t, n, syn(uint16(10000+i), "10.200.0.53"))
	}
	st, err := n.Stats()
	require.NoError(t, err)
	// BPF_PROG_TEST_RUN runs on one CPU, and 20 runs fit in one second.
	assert.Equal(t, uint64(15), st.SYNFloodBypasses)
	entries := 0
	var k, v []byte
	iter := n.objs.Flows.Iterate()
	for iter.Next(&k, &v) {
		entries++
	}
	require.NoError(t, iter.Err())
	assert.Equal(t, 5, entries, "only SYNs under the threshold entered the flow table")
}

func TestCountersPerVIPBackendAndDropReason(t *testing.T) {
	n := openTestNode(t, Config{})
	s := fixtureServices()
	setup(t, n, []service{s["v4tcp"], s["empty"]})
	in := ack(40000, "10.200.0.10")
	b := send(t, n, in)
	send(t, n, in)
	run(t, n.Program(), tcp4(client4(), addr("10.200.0.10"), 40000, 80, tcpACK, v4opts{mf: true}, 8))
	run(t, n.Program(), ack(40000, "10.200.0.30"))
	run(t, n.Program(), ack(40000, "10.200.0.99"))

	st, err := n.Stats()
	require.NoError(t, err)
	assert.Equal(t, Counter{Packets: 2, Bytes: uint64(2 * len(in))}, st.VIPs[s["v4tcp"].vip.VIPKey])
	assert.Equal(t, uint64(1), st.VIPs[s["empty"].vip.VIPKey].Packets)
	assert.Equal(t, Counter{Packets: 2, Bytes: uint64(2 * len(in))}, st.Backends[b])
	assert.Equal(t, uint64(1), st.Drops[DropFragment].Packets)
	assert.Equal(t, uint64(1), st.Drops[DropNoBackend].Packets)
	assert.Len(t, st.Drops, 2)
}

func TestBadUpdatesChangeNothing(t *testing.T) {
	n := openTestNode(t, Config{})
	s := fixtureServices()["v4tcp"]
	setup(t, n, []service{s})
	in := ack(40000, "10.200.0.10")
	before := send(t, n, in)
	good, err := n.Backends(s.vip.VIPKey)
	require.NoError(t, err)

	bad := map[string][]Backend{
		"duplicate":     {{Addr: addr("10.0.1.11"), Weight: 1}, {Addr: addr("10.0.1.11"), Weight: 2}},
		"no address":    {{Weight: 1}},
		"unspecified":   {{Addr: addr("0.0.0.0"), Weight: 1}},
		"huge weight":   {{Addr: addr("10.0.1.11"), Weight: 2_000_000}},
		"unknown state": {{Addr: addr("10.0.1.11"), Weight: 1, State: "paused"}},
	}
	for name, list := range bad {
		assert.Error(t, n.SetBackends(s.vip.VIPKey, list), name)
	}
	assert.ErrorAs(t, n.SetBackends(VIPKey{Addr: addr("10.9.9.9"), Port: 1, Protocol: ProtocolTCP}, good), &UnknownVIPError{})
	assert.Error(t, n.AddVIP(VIP{VIPKey: VIPKey{Addr: addr("10.9.9.9"), Protocol: 1}}))
	assert.Error(t, n.AddVIP(VIP{VIPKey: VIPKey{Port: 80, Protocol: ProtocolTCP}}))
	assert.Error(t, n.AddVIP(tcpVIP("10.9.9.9", 80, HashDestinationPortOnly|HashNoSourcePort)))
	assert.Error(t, n.AddVIP(tcpVIP("10.9.9.9", 80, 1<<9)))

	after, err := n.Backends(s.vip.VIPKey)
	require.NoError(t, err)
	assert.Equal(t, good, after)
	assert.Equal(t, before, send(t, n, in))
	assert.Len(t, n.VIPs(), 1)
	assert.Len(t, n.backends, 3, "no backend index leaked")
}

// Packets keep flowing to one of the two backend sets while the table is
// replaced again and again; a half-written table would show up as a drop
// or as a backend from neither set.
func TestRingSwapIsAtomicUnderTraffic(t *testing.T) {
	n := openTestNode(t, Config{})
	s := service{tcpVIP("10.200.0.54", 80, NoFlowTable), backendsAt("10.0.1.11", "10.0.1.12")}
	setup(t, n, []service{s})
	other := backendsAt("10.0.2.11", "10.0.2.12", "10.0.2.13")
	allowed := map[netip.Addr]bool{}
	for _, b := range append(s.backends, other...) {
		allowed[b.Addr] = true
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			opts := runOpts(ack(uint16(i), "10.200.0.54"))
			verdict, err := n.Program().Run(&opts)
			if err != nil || verdict != xdpTX || !allowed[backendOf(t, opts.DataOut)] {
				bad.Add(1)
			}
		}
	}()
	for i := 0; i < 20; i++ {
		list := s.backends
		if i%2 == 0 {
			list = other
		}
		require.NoError(t, n.SetBackends(s.vip.VIPKey, list))
	}
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, bad.Load())
}

func TestRemoveVIPReturnsTrafficToTheStack(t *testing.T) {
	n := openTestNode(t, Config{})
	s := fixtureServices()
	setup(t, n, []service{s["v4tcp"], s["v4udpAll"]})
	frag := tcp4(client4(), addr("10.200.0.10"), 40000, 80, tcpACK, v4opts{mf: true}, 8)

	require.NoError(t, n.RemoveVIP(s["v4tcp"].vip.VIPKey))
	verdict, _ := run(t, n.Program(), ack(40000, "10.200.0.10"))
	assert.Equal(t, uint32(xdpPass), verdict)
	verdict, _ = run(t, n.Program(), frag)
	assert.Equal(t, uint32(xdpDrop), verdict, "another VIP still lives on the address")
	assert.Len(t, n.backends, 2, "backends only the removed VIP used are released")

	require.NoError(t, n.RemoveVIP(s["v4udpAll"].vip.VIPKey))
	verdict, _ = run(t, n.Program(), frag)
	assert.Equal(t, uint32(xdpPass), verdict, "no VIP on the address any more")
	assert.Empty(t, n.backends)
	assert.ErrorAs(t, n.RemoveVIP(s["v4tcp"].vip.VIPKey), &UnknownVIPError{})

	setup(t, n, []service{s["v4tcp"]})
	send(t, n, ack(40000, "10.200.0.10"))
	st, err := n.Stats()
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.VIPs[s["v4tcp"].vip.VIPKey].Packets, "a re-added VIP starts from zero")
}

package lbnode

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/metalflow/metalflow/lbnode/maglev"
)

// Measurement is what `metalflow bench xdp` reports. Times are only
// meaningful relative to each other, measured in the same process on the
// same machine; the baseline is a program that passes every packet.
//
// Two ways of timing one packet are reported:
//   - amortized: the kernel's repeat loop over one frame, timing many runs
//     at once. The balancer rewrites the frame in place, so it runs wrapped
//     in xdp_balance_bench, which undoes the encapsulation after each run
//     (a few ns, so the balancer's figure errs high).
//   - per call: one run per BPF_PROG_TEST_RUN call, which adds the kernel
//     timer's own cost (tens of ns on a VM's clock) to both figures.
type Measurement struct {
	BaselineNs float64 // amortized ns per packet, XDP_PASS program
	BalancerNs float64 // amortized ns per packet, IPv4 TCP to a VIP with 100 backends, encap + TX
	Ratio      float64 // BalancerNs / BaselineNs

	PerCallBaselineNs float64
	PerCallBalancerNs float64
	PerCallRatio      float64

	MaglevBuildMs float64 // one table of 65537 slots for 1,000 backends
	DisruptionPct float64 // slots that change owner when 1 of 100 backends leaves
}

// Measure times the data plane against the baseline through
// BPF_PROG_TEST_RUN — packets runs of each per round, over several rounds,
// the quietest round standing for each — and times Maglev builds.
func Measure(packets int) (Measurement, error) {
	var m Measurement
	n, err := Open(Config{NextHopMAC: []byte{2, 0, 0, 0, 0, 1}, Seed: 1})
	if err != nil {
		return m, err
	}
	defer n.Close()
	vip := VIPKey{Addr: netip.MustParseAddr("10.200.0.10"), Port: 80, Protocol: ProtocolTCP}
	if err := n.AddVIP(VIP{VIPKey: vip}); err != nil {
		return m, err
	}
	backends := make([]Backend, 100)
	for i := range backends {
		backends[i] = Backend{Addr: netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}), Weight: 100}
	}
	if err := n.SetBackends(vip, backends); err != nil {
		return m, err
	}
	frame := buildBenchFrame()
	const rounds = 5
	const xdpPass, xdpTX = 2, 3

	best := func(cur *float64, r int, v float64) {
		if r == 0 || v < *cur {
			*cur = v
		}
	}
	for r := 0; r < rounds; r++ {
		verdict, d, err := n.objs.XdpBalanceBench.Benchmark(frame, packets, nil)
		if err != nil {
			return m, fmt.Errorf("running the balancer: %w", err)
		}
		if verdict != xdpTX {
			return m, fmt.Errorf("balancer returned verdict %d, want XDP_TX", verdict)
		}
		best(&m.BalancerNs, r, float64(d.Nanoseconds()))
		if _, d, err = n.PassProgram().Benchmark(frame, packets, nil); err != nil {
			return m, fmt.Errorf("running the baseline: %w", err)
		}
		best(&m.BaselineNs, r, float64(d.Nanoseconds()))

		// Per call, balancer and baseline alternate packet by packet so
		// both see the same interference from the rest of the machine.
		var lbTotal, passTotal time.Duration
		calls := max(packets/10, 100)
		for i := 0; i < calls; i++ {
			verdict, d, err := n.Program().Benchmark(frame, 1, nil)
			if err != nil || verdict != xdpTX {
				return m, fmt.Errorf("running the balancer: verdict %d, %v", verdict, err)
			}
			lbTotal += d
			if verdict, d, err = n.PassProgram().Benchmark(frame, 1, nil); err != nil || verdict != xdpPass {
				return m, fmt.Errorf("running the baseline: verdict %d, %v", verdict, err)
			}
			passTotal += d
		}
		best(&m.PerCallBalancerNs, r, float64(lbTotal.Nanoseconds())/float64(calls))
		best(&m.PerCallBaselineNs, r, float64(passTotal.Nanoseconds())/float64(calls))
	}
	m.Ratio = m.BalancerNs / max(m.BaselineNs, 1)
	m.PerCallRatio = m.PerCallBalancerNs / m.PerCallBaselineNs

	big := make([]maglev.Backend, 1000)
	for i := range big {
		big[i] = maglev.Backend{Key: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Weight: 100}
	}
	var builds []float64
	for r := 0; r < rounds; r++ {
		start := time.Now()
		if _, err := maglev.Build(big, maglev.DefaultSize, 1); err != nil {
			return m, err
		}
		builds = append(builds, float64(time.Since(start).Microseconds())/1000)
	}
	m.MaglevBuildMs = pickMedian(builds)
	m.DisruptionPct, err = measureDisruption(big[:100])
	return m, err
}

func measureDisruption(bs []maglev.Backend) (float64, error) {
	before, err := maglev.Build(bs, maglev.DefaultSize, 1)
	if err != nil {
		return 0, err
	}
	rest := bs[1:]
	after, err := maglev.Build(rest, maglev.DefaultSize, 1)
	if err != nil {
		return 0, err
	}
	moved := 0
	for i := range before.Slots {
		if bs[before.Slots[i]].Key != rest[after.Slots[i]].Key {
			moved++
		}
	}
	return 100 * float64(moved) / float64(len(before.Slots)), nil
}

func pickMedian(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// buildBenchFrame is a 64-byte-payload TCP ACK from 192.0.2.1:40000 to
// 10.200.0.10:80.
func buildBenchFrame() []byte {
	const payload = 64
	f := make([]byte, 14+20+20+payload)
	copy(f[0:6], []byte{2, 0, 0, 0, 0, 0xbb})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 0xaa})
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 20+20+payload)
	binary.BigEndian.PutUint16(ip[6:], 0x4000)
	ip[8], ip[9] = 64, 6
	copy(ip[12:16], []byte{192, 0, 2, 1})
	copy(ip[16:20], []byte{10, 200, 0, 10})
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	tcp[12], tcp[13] = 5<<4, 0x10
	return f
}

// ResultLine is the last line `metalflow bench xdp` prints.
func (m Measurement) ResultLine() string {
	return fmt.Sprintf("RESULT baseline_ns=%.1f lb_ns=%.1f ratio=%.2f maglev_build_ms=%.2f disruption_pct=%.3f",
		m.BaselineNs, m.BalancerNs, m.Ratio, m.MaglevBuildMs, m.DisruptionPct)
}

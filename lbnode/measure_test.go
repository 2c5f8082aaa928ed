package lbnode

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBenchFrameReachesABackend(t *testing.T) {
	n := openTestNode(t, Config{})
	s := service{tcpVIP("10.200.0.10", 80, 0), backendsAt("10.0.1.11")}
	setup(t, n, []service{s})
	assert.Equal(t, addr("10.0.1.11"), send(t, n, buildBenchFrame()))

	// The benchmark wrapper must hand the kernel's repeat loop the same
	// client frame every time.
	verdict, out := run(t, n.objs.XdpBalanceBench, buildBenchFrame())
	assert.Equal(t, uint32(xdpTX), verdict)
	assert.Equal(t, buildBenchFrame(), out)
}

// BenchmarkXDPPacket reports ns/packet of the balancer against an XDP_PASS
// program in the same run; only the ratio is comparable across machines.
func BenchmarkXDPPacket(b *testing.B) {
	requireBPF(b)
	m, err := Measure(max(b.N, 10000))
	require.NoError(b, err)
	b.ReportMetric(m.BaselineNs, "baseline_ns/pkt")
	b.ReportMetric(m.BalancerNs, "lb_ns/pkt")
	b.ReportMetric(m.Ratio, "ratio")
	b.ReportMetric(m.PerCallBaselineNs, "percall_baseline_ns/pkt")
	b.ReportMetric(m.PerCallBalancerNs, "percall_lb_ns/pkt")
	b.ReportMetric(m.PerCallRatio, "percall_ratio")
	b.ReportMetric(m.MaglevBuildMs, "maglev_build_ms")
	b.ReportMetric(m.DisruptionPct, "disruption_pct")
	b.Log(m.ResultLine())
}

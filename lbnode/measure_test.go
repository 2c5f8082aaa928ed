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
	assert.Equal(t, addr("10.0.1.11"), send(t, n, benchFrame()))
}

// BenchmarkXDPPacket reports ns/packet of the balancer against an XDP_PASS
// program in the same run; only the ratio is comparable across machines.
func BenchmarkXDPPacket(b *testing.B) {
	requireBPF(b)
	m, err := Measure(max(b.N, 1000))
	require.NoError(b, err)
	b.ReportMetric(m.BaselineNs, "baseline_ns/pkt")
	b.ReportMetric(m.BalancerNs, "lb_ns/pkt")
	b.ReportMetric(m.Ratio, "ratio")
	b.ReportMetric(m.MaglevBuildMs, "maglev_build_ms")
	b.ReportMetric(m.DisruptionPct, "disruption_pct")
	b.Log(m.ResultLine())
}

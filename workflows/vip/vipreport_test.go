package vip

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/internal/wftest"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// Reading a VIP's counters asks every placed node; a node that does not
// answer is named with its error, the others still count.
func TestVIPReportAsksEveryPlacedNode(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	var report *wftest.UpdateOutcome
	vt.at(time.Minute, func() {
		vt.fleet.set("c2/a", func(n *fakeLBNode) { n.traffic = lbapi.Counter{Packets: 10, Bytes: 1000} })
		vt.fleet.set("c3/b", func(n *fakeLBNode) { n.traffic = lbapi.Counter{Packets: 5, Bytes: 300} })
		vt.fleet.set("c3/a", func(n *fakeLBNode) { n.down = true })
		report = vt.update(vipapi.UpdateReport, nil)
	})
	vt.at(90*time.Second, func() { vt.fleet.set("c3/a", func(n *fakeLBNode) { n.down = false }) })
	vt.at(2*time.Minute, func() { vt.update(vipapi.UpdateRetire, vipapi.RetireInput{By: "alice"}) })
	vt.env.ExecuteWorkflow(vipapi.VIPRolloutName, webInput())
	vt.result()

	require.NoError(t, report.Refused())
	rep, ok := report.Value.(vipapi.VIPReport)
	require.True(t, ok, "report answered %T", report.Value)
	require.Len(t, rep.Nodes, 4, "two clusters of two nodes")
	require.Equal(t, lbapi.Counter{Packets: 15, Bytes: 1300}, rep.Total)
	var failed []string
	for _, n := range rep.Nodes {
		if n.Error != "" {
			failed = append(failed, n.Cluster+"/"+n.Node)
		}
	}
	require.Equal(t, []string{"c3/a"}, failed)
}

package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Reading a VIP's counters asks every placed node; a node that does not
// answer is named with its error, the others still count.
func TestVIPReportAsksEveryPlacedNode(t *testing.T) {
	vt := newVIPTest(t)
	vt.standardClusters()
	var report *updateOutcome
	vt.at(time.Minute, func() {
		vt.fleet.set("c2/a", func(n *fakeLBNode) { n.traffic = lbapi.Counter{Packets: 10, Bytes: 1000} })
		vt.fleet.set("c3/b", func(n *fakeLBNode) { n.traffic = lbapi.Counter{Packets: 5, Bytes: 300} })
		vt.fleet.set("c3/a", func(n *fakeLBNode) { n.down = true })
		report = vt.update(UpdateReport, nil)
	})
	vt.at(90*time.Second, func() { vt.fleet.set("c3/a", func(n *fakeLBNode) { n.down = false }) })
	vt.at(2*time.Minute, func() { vt.update(UpdateRetire, RetireInput{By: "alice"}) })
	vt.env.ExecuteWorkflow(VIPRolloutName, webInput())
	vt.result()

	require.NoError(t, report.refused())
	rep, ok := report.value.(VIPReport)
	require.True(t, ok, "report answered %T", report.value)
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

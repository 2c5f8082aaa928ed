package vip

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/steprunner"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// reportActivityOptions: a read for a person waiting on a page, so one
// quick attempt; a node that does not answer is reported as such.
func reportActivityOptions(cluster, node string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		TaskQueue:              lbapi.TaskQueue(cluster, node),
		ScheduleToStartTimeout: 5 * time.Second,
		StartToCloseTimeout:    5 * time.Second,
		RetryPolicy:            &temporal.RetryPolicy{MaximumAttempts: 1},
	}
}

// handleReport asks every placed node in parallel.
func (v *vip) handleReport(ctx workflow.Context) (vipapi.VIPReport, error) {
	type pending struct {
		t vipapi.NodeTraffic
		f workflow.Future
	}
	var asks []pending
	for _, c := range v.state.Placement {
		for _, n := range c.Nodes {
			f := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, reportActivityOptions(c.Cluster, n)),
				lbapi.NodeReportName, lbapi.NodeReportInput{VIP: v.in.Name})
			asks = append(asks, pending{t: vipapi.NodeTraffic{Cluster: c.Cluster, Node: n}, f: f})
		}
	}
	rep := vipapi.VIPReport{Nodes: []vipapi.NodeTraffic{}}
	for _, a := range asks {
		var nr lbapi.NodeReport
		if err := a.f.Get(ctx, &nr); err != nil {
			a.t.Error = steprunner.Cause(err)
		}
		for _, vr := range nr.VIPs {
			if vr.Name == v.in.Name {
				a.t.Counter, a.t.Backends, a.t.Announced = vr.Counter, vr.Backends, vr.Announced
				rep.Total.Packets += vr.Counter.Packets
				rep.Total.Bytes += vr.Counter.Bytes
			}
		}
		rep.Nodes = append(rep.Nodes, a.t)
	}
	return rep, nil
}

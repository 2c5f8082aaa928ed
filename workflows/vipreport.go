package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// UpdateReport asks a VIP's workflow for the traffic counters of every node
// it is placed on. It is an update, not a query, because only activities
// reach the nodes; the API calls it when someone reads one VIP.
const UpdateReport = "report"

// VIPReport is what the nodes say about a VIP, node by node.
type VIPReport struct {
	Nodes []NodeTraffic `json:"nodes"`
	// Total adds up the VIP's packets and bytes over the nodes that
	// answered.
	Total lbapi.Counter `json:"total"`
}

// NodeTraffic is one node's counters for the VIP, or why there are none.
type NodeTraffic struct {
	Cluster  string                `json:"cluster"`
	Node     string                `json:"node"`
	Counter  lbapi.Counter         `json:"counter"`
	Backends []lbapi.BackendReport `json:"backends,omitempty"`
	// Announced is the scope the node's BGP speaker has the route in.
	Announced string `json:"announced,omitempty"`
	Error     string `json:"error,omitempty"`
}

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
func (v *vip) handleReport(ctx workflow.Context) (VIPReport, error) {
	type pending struct {
		t NodeTraffic
		f workflow.Future
	}
	var asks []pending
	for _, c := range v.state.Placement {
		for _, n := range c.Nodes {
			f := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, reportActivityOptions(c.Cluster, n)),
				lbapi.NodeReportName, lbapi.NodeReportInput{VIP: v.in.Name})
			asks = append(asks, pending{t: NodeTraffic{Cluster: c.Cluster, Node: n}, f: f})
		}
	}
	rep := VIPReport{Nodes: []NodeTraffic{}}
	for _, a := range asks {
		var nr lbapi.NodeReport
		if err := a.f.Get(ctx, &nr); err != nil {
			a.t.Error = cause(err)
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

package vip

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/workflows/internal/options"
	"github.com/metalflow/metalflow/workflows/steprunner"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// joinDue says nodes wait to be brought in and the VIP can take them: a
// VIP in the middle of a change, or waiting for staff, takes them after.
func (v *vip) joinDue() bool { return len(v.state.Joining) > 0 && v.stable() }

// takeNodeUp queues a node to be brought in once the VIP is stable. A
// node of a cluster the VIP is not placed on is none of its business.
func (v *vip) takeNodeUp(ctx workflow.Context, up vipapi.NodeUp) {
	if v.final() || up.Cluster == "" || up.Node == "" {
		return
	}
	if !slices.ContainsFunc(v.state.Placement, func(p vipapi.VIPPlacement) bool { return p.Cluster == up.Cluster }) {
		workflow.GetLogger(ctx).Info("a node came up in a cluster the VIP is not placed on", "vip", v.in.Name, "cluster", up.Cluster, "node", up.Node)
		return
	}
	key := up.Cluster + "/" + up.Node
	if !slices.Contains(v.state.Joining, key) {
		v.state.Joining = append(v.state.Joining, key)
	}
}

// joinNodes brings the queued nodes that are up into the placement and
// programs each with what the others run, verified and probed like a
// canary. A node that fails is rolled back and parks the VIP in attention:
// retry tries it again, abort leaves it out (until it next comes up).
func (v *vip) joinNodes(ctx workflow.Context) error {
	stable := v.state.State
	v.state.State = vipapi.VIPStateUpdating
	defer func() { v.state.State = stable }()
	var joined []string
	err := v.runner.RunStep(ctx, steprunner.Step{Name: vipapi.VIPStepJoinNodes, Run: func(ctx workflow.Context) error {
		added, err := v.joinQueued(ctx)
		joined = append(joined, added...)
		return err
	}})
	if errors.Is(err, steprunner.ErrAborted) {
		v.leaveOut(joined)
		return v.record(ctx)
	}
	if err != nil {
		return err
	}
	return v.record(ctx)
}

// joinQueued takes the queue and joins the nodes on it that the inventory
// says are up; it returns the nodes it added to the placement.
func (v *vip) joinQueued(ctx workflow.Context) (added []string, err error) {
	var res vipapi.ListLBClustersResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), vipapi.ListLBClustersName,
		vipapi.ListLBClustersInput{}).Get(ctx, &res); err != nil {
		return nil, err
	}
	up := map[string]bool{}
	for _, c := range res.Clusters {
		for _, n := range c.Nodes {
			up[c.Name+"/"+n.Node] = n.Up
		}
	}
	queued := v.state.Joining
	v.state.Joining = nil
	var keys []string
	for _, key := range queued {
		cluster, node, _ := strings.Cut(key, "/")
		i := slices.IndexFunc(v.state.Placement, func(p vipapi.VIPPlacement) bool { return p.Cluster == cluster })
		if i < 0 || !up[key] {
			// Gone down again (or the VIP moved): its next coming up
			// queues it again.
			continue
		}
		p := &v.state.Placement[i]
		if !slices.Contains(p.Nodes, node) {
			p.Nodes = append(p.Nodes, node)
			slices.Sort(p.Nodes)
			added = append(added, key)
		}
		keys = append(keys, key)
	}
	// Every record first: inserting one moves the others.
	for _, key := range keys {
		cluster, node, _ := strings.Cut(key, "/")
		v.node(cluster, node)
	}
	var nodes []*vipapi.VIPNode
	for _, key := range keys {
		cluster, node, _ := strings.Cut(key, "/")
		nodes = append(nodes, v.node(cluster, node))
	}
	before := v.nodeSpecs()
	// The spec the other nodes run, health drains included; a health
	// change still pending reaches the joined nodes with everyone else.
	target := v.spec(v.state.Announce)
	err = v.onEach(ctx, nodes, func(ctx workflow.Context, n *vipapi.VIPNode) error {
		return v.applyAndVerify(ctx, n, target, true)
	})
	if err == nil {
		return added, nil
	}
	failed := slices.DeleteFunc(slices.Clone(nodes), func(n *vipapi.VIPNode) bool { return n.State != vipapi.NodeFailed && n.State != vipapi.NodeUnreachable })
	rolled := v.rollBack(ctx, before, failed)
	// A retry joins the failed nodes again.
	for _, n := range failed {
		if !slices.Contains(v.state.Joining, n.Key()) {
			v.state.Joining = append(v.state.Joining, n.Key())
		}
	}
	return added, fmt.Errorf("%s; rolled back on %d node(s)", steprunner.Cause(err), rolled)
}

// leaveOut gives up on the nodes an aborted join could not program: those
// it added to the placement leave it again (the VIP was rolled back on
// them); a node that was placed before keeps what the rollback left.
func (v *vip) leaveOut(added []string) {
	failed := v.state.Joining
	v.state.Joining = nil
	for _, key := range failed {
		if !slices.Contains(added, key) {
			v.warn(fmt.Sprintf("node %s came up but VIP %s could not be verified on it (aborted); see its state", key, v.in.Name))
			continue
		}
		cluster, node, _ := strings.Cut(key, "/")
		for i := range v.state.Placement {
			if p := &v.state.Placement[i]; p.Cluster == cluster {
				p.Nodes = slices.DeleteFunc(p.Nodes, func(n string) bool { return n == node })
			}
		}
		v.warn(fmt.Sprintf("node %s came up but VIP %s could not be programmed on it (aborted): it stays out until it next comes up", key, v.in.Name))
	}
}

package vip

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/steprunner"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// nodeActivityOptions: a node activity goes to that node's own queue. A
// node that does not poll (down, partitioned) is noticed within the
// schedule-to-start timeout; one that fails is tried a few times; after
// that the rollout rolls back and asks a human, instead of hanging.
func nodeActivityOptions(cluster, node string) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		TaskQueue:              lbapi.TaskQueue(cluster, node),
		ScheduleToStartTimeout: 30 * time.Second,
		StartToCloseTimeout:    30 * time.Second,
		ScheduleToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    10 * time.Second,
			MaximumAttempts:    3,
		},
	}
}

func nodeCtx(ctx workflow.Context, cluster, node string) workflow.Context {
	return workflow.WithActivityOptions(ctx, nodeActivityOptions(cluster, node))
}

// node returns the record of a node, creating it (not running the VIP).
func (v *vip) node(cluster, name string) *vipapi.VIPNode {
	key := cluster + "/" + name
	i, found := slices.BinarySearchFunc(v.state.Nodes, key, func(n vipapi.VIPNode, k string) int { return strings.Compare(n.Key(), k) })
	if !found {
		v.state.Nodes = slices.Insert(v.state.Nodes, i, vipapi.VIPNode{Cluster: cluster, Node: name, State: vipapi.NodePending})
	}
	return &v.state.Nodes[i]
}

// nodeSpecs remembers what every node ran before an operation, to roll
// back to.
func (v *vip) nodeSpecs() map[string]*lbapi.VIPSpec {
	out := map[string]*lbapi.VIPSpec{}
	for _, n := range v.state.Nodes {
		if n.Spec != nil {
			s := *n.Spec
			out[n.Key()] = &s
		}
	}
	return out
}

// rollOut brings every placed node to target, cluster by cluster in
// placement order: one canary node first, verified by its digest, its
// report and a probe through its data plane; then the rest of the cluster
// at once; then, if the nodes were programmed unannounced (stage), the
// announcement on all of them. The next cluster starts only when one is
// fully done, so a bad spec never reaches a second failure domain. Any
// failure rolls back every node this rollout touched.
func (v *vip) rollOut(ctx workflow.Context, target lbapi.VIPSpec, stage string) error {
	before := v.nodeSpecs()
	// Every placed node gets its record first: records are pointed at
	// below, and inserting one later would move the others.
	for _, c := range v.state.Placement {
		for _, name := range c.Nodes {
			v.node(c.Cluster, name)
		}
	}
	var touched []*vipapi.VIPNode
	err := v.rollOutClusters(ctx, target, stage, &touched)
	if err == nil {
		return nil
	}
	if temporal.IsCanceledError(err) {
		return err
	}
	n := v.rollBack(ctx, before, touched)
	return fmt.Errorf("%s; rolled back on %d node(s)", steprunner.Cause(err), n)
}

func (v *vip) rollOutClusters(ctx workflow.Context, target lbapi.VIPSpec, stage string, touched *[]*vipapi.VIPNode) error {
	staged := target
	staged.Announce = stage
	for _, c := range v.state.Placement {
		if len(c.Nodes) == 0 {
			continue
		}
		var nodes []*vipapi.VIPNode
		for _, name := range c.Nodes {
			nodes = append(nodes, v.node(c.Cluster, name))
		}
		*touched = append(*touched, nodes[0])
		if err := v.applyAndVerify(ctx, nodes[0], staged, true); err != nil {
			return fmt.Errorf("canary %s: %w", nodes[0].Key(), err)
		}
		*touched = append(*touched, nodes[1:]...)
		if err := v.onEach(ctx, nodes[1:], func(ctx workflow.Context, n *vipapi.VIPNode) error {
			return v.applyAndVerify(ctx, n, staged, false)
		}); err != nil {
			return err
		}
		if stage != target.Announce {
			if err := v.onEach(ctx, nodes, func(ctx workflow.Context, n *vipapi.VIPNode) error {
				return v.applyAndVerify(ctx, n, target, false)
			}); err != nil {
				return err
			}
		}
	}
	return nil
}

// onEach runs fn on the nodes in parallel and reports every failure, in
// node order.
func (v *vip) onEach(ctx workflow.Context, nodes []*vipapi.VIPNode, fn func(workflow.Context, *vipapi.VIPNode) error) error {
	errs := make([]error, len(nodes))
	wg := workflow.NewWaitGroup(ctx)
	for i, n := range nodes {
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			if err := fn(ctx, n); err != nil {
				errs[i] = fmt.Errorf("%s: %w", n.Key(), err)
			}
		})
	}
	wg.Wait(ctx)
	return errors.Join(errs...)
}

// applyAndVerify applies spec on a node and checks that the node really
// runs it: the digest it answers, the digest in its report, its health,
// the route its BGP speaker holds and, for a canary, a probe packet that
// its program sends to an active backend.
func (v *vip) applyAndVerify(ctx workflow.Context, n *vipapi.VIPNode, spec lbapi.VIPSpec, probe bool) error {
	want := specDigest(spec)
	ctx = nodeCtx(ctx, n.Cluster, n.Node)
	wasUnsure := n.Unsure
	n.Unsure = true
	var res lbapi.ApplyVIPResult
	if err := workflow.ExecuteActivity(ctx, lbapi.ApplyVIPName, lbapi.ApplyVIPInput{Spec: spec}).Get(ctx, &res); err != nil {
		if neverStarted(err) {
			// No worker took the task: the node did not change, and
			// there is nothing to roll back on it.
			n.State, n.Unsure = vipapi.NodeUnreachable, wasUnsure
			return fmt.Errorf("apply: %s", nodeCause(err))
		}
		n.State = vipapi.NodeFailed
		return fmt.Errorf("apply: %s", nodeCause(err))
	}
	n.Digest = res.Digest
	if res.Digest != want {
		n.State = vipapi.NodeFailed
		return fmt.Errorf("runs digest %s after the apply, want %s", res.Digest, want)
	}
	for attempt := 1; ; attempt++ {
		var rep lbapi.NodeReport
		if err := workflow.ExecuteActivity(ctx, lbapi.NodeReportName, lbapi.NodeReportInput{VIP: spec.Name}).Get(ctx, &rep); err != nil {
			n.State = vipapi.NodeFailed
			return fmt.Errorf("report: %s", nodeCause(err))
		}
		err := v.checkReport(n, rep, spec, want)
		if err == nil {
			break
		}
		// A BGP speaker takes a moment to put a route in its RIB: an
		// announcement is given a few seconds, a wrong digest none.
		var late *routeNotYet
		if !errors.As(err, &late) || attempt == routeChecks {
			n.State = vipapi.NodeFailed
			return err
		}
		if err := workflow.Sleep(ctx, routeCheckInterval); err != nil {
			return err
		}
	}
	if probe {
		if err := v.probe(ctx, n, spec); err != nil {
			n.State = vipapi.NodeFailed
			return err
		}
	}
	s := spec
	n.Spec, n.Unsure, n.Digest = &s, false, want
	n.State = vipapi.NodeProgrammed
	if spec.Announce != lbapi.AnnounceNone {
		n.State = vipapi.NodeAnnounced
	}
	return nil
}

func (v *vip) checkReport(n *vipapi.VIPNode, rep lbapi.NodeReport, spec lbapi.VIPSpec, want string) error {
	if !rep.Healthy {
		return errors.New("the node reports its data plane unhealthy")
	}
	var got *lbapi.VIPReport
	for i := range rep.VIPs {
		if rep.VIPs[i].Name == spec.Name {
			got = &rep.VIPs[i]
		}
	}
	if got == nil {
		return errors.New("the node's report does not list the VIP")
	}
	n.Digest = got.Digest
	if got.Digest != want {
		return fmt.Errorf("the node's report gives digest %s, want %s", got.Digest, want)
	}
	if got.Announced == spec.Announce {
		return nil
	}
	// Nodes without BGP (a lab, a test bed) cannot announce anything; they
	// are accepted, but the status says the route was not verified.
	if got.Announced == lbapi.AnnounceNone && len(rep.Peers) == 0 {
		v.warn(fmt.Sprintf("node %s has no BGP peers: announcement (%s) not verified", n.Key(), spec.Announce))
		return nil
	}
	return &routeNotYet{got: got.Announced, want: spec.Announce}
}

// routeChecks and routeCheckInterval bound the wait for a node's route.
const (
	routeChecks        = 3
	routeCheckInterval = 2 * time.Second
)

type routeNotYet struct{ got, want string }

func (e *routeNotYet) Error() string {
	return fmt.Sprintf("the node announces %q, want %q", e.got, e.want)
}

// probe sends a synthetic flow through the node's program: the packet must
// leave towards one of the VIP's active backends and move its counter.
func (v *vip) probe(ctx workflow.Context, n *vipapi.VIPNode, spec lbapi.VIPSpec) error {
	active := map[string]bool{}
	for _, b := range spec.Backends {
		if b.Weight > 0 && b.State != lbapi.BackendDrain {
			active[b.Address] = true
		}
	}
	if len(active) == 0 {
		v.warn("no active backend: the canary probe was skipped")
		return nil
	}
	var res lbapi.ProbeVIPResult
	if err := workflow.ExecuteActivity(ctx, lbapi.ProbeVIPName, lbapi.ProbeVIPInput{VIP: spec.Name}).Get(ctx, &res); err != nil {
		return fmt.Errorf("probe: %s", nodeCause(err))
	}
	switch {
	case !res.Forwarded:
		return fmt.Errorf("the probe was not forwarded (verdict %q)", res.Verdict)
	case !active[res.Backend]:
		return fmt.Errorf("the probe went to %q, not an active backend", res.Backend)
	case res.PacketsAfter <= res.PacketsBefore:
		return fmt.Errorf("the probe did not move the VIP's packet counter (%d before, %d after)", res.PacketsBefore, res.PacketsAfter)
	}
	return nil
}

// rollBack puts every touched node back to what it ran before: the
// previous spec, or no VIP at all, and says on how many nodes it tried. A
// node that cannot be rolled back stays marked unsure, so retire still
// cleans it.
func (v *vip) rollBack(ctx workflow.Context, before map[string]*lbapi.VIPSpec, touched []*vipapi.VIPNode) int {
	// A node that took no task and runs what it ran before has nothing
	// to undo (and would only time out again).
	touched = slices.DeleteFunc(slices.Clone(touched), func(n *vipapi.VIPNode) bool {
		return n.State == vipapi.NodeUnreachable && !n.Unsure && sameSpec(n.Spec, before[n.Key()])
	})
	_ = v.onEach(ctx, touched, func(ctx workflow.Context, n *vipapi.VIPNode) error {
		prev := before[n.Key()]
		nctx := nodeCtx(ctx, n.Cluster, n.Node)
		var err error
		if prev != nil {
			var res lbapi.ApplyVIPResult
			err = workflow.ExecuteActivity(nctx, lbapi.ApplyVIPName, lbapi.ApplyVIPInput{Spec: *prev}).Get(ctx, &res)
			if err == nil && res.Digest != specDigest(*prev) {
				err = fmt.Errorf("runs digest %s after the rollback, want %s", res.Digest, specDigest(*prev))
			}
			if err == nil {
				n.Digest = res.Digest
			}
		} else {
			err = workflow.ExecuteActivity(nctx, lbapi.RemoveVIPName, lbapi.RemoveVIPInput{Name: v.in.Name}).Get(ctx, nil)
			if err == nil {
				n.Digest = ""
			}
		}
		if err != nil {
			n.State, n.Unsure = vipapi.NodeFailed, true
			v.warn(fmt.Sprintf("rollback on %s failed: %s; it may still run another spec", n.Key(), nodeCause(err)))
			return err
		}
		n.Spec, n.Unsure, n.State = prev, false, vipapi.NodeRolledBack
		return nil
	})
	return len(touched)
}

// removeEverywhere removes the VIP from every node that holds it or may.
func (v *vip) removeEverywhere(ctx workflow.Context) error {
	var holding []*vipapi.VIPNode
	for i := range v.state.Nodes {
		if n := &v.state.Nodes[i]; n.Spec != nil || n.Unsure {
			holding = append(holding, n)
		}
	}
	return v.onEach(ctx, holding, func(ctx workflow.Context, n *vipapi.VIPNode) error {
		nctx := nodeCtx(ctx, n.Cluster, n.Node)
		var res lbapi.RemoveVIPResult
		if err := workflow.ExecuteActivity(nctx, lbapi.RemoveVIPName, lbapi.RemoveVIPInput{Name: v.in.Name}).Get(ctx, &res); err != nil {
			n.State = vipapi.NodeFailed
			return fmt.Errorf("remove: %s", nodeCause(err))
		}
		n.Spec, n.Unsure, n.Digest, n.State = nil, false, "", vipapi.NodeRemoved
		return nil
	})
}

// specDigest is lbapi.Digest: a JSON encoding of a struct of plain fields
// and slices, which is deterministic even though workflowcheck cannot tell.
//
//workflowcheck:ignore
func specDigest(s lbapi.VIPSpec) string {
	return lbapi.Digest(s) //workflowcheck:ignore
}

// neverStarted says no worker took the activity's task: a node whose
// lbnode is not running (or cannot reach Temporal) did nothing.
func neverStarted(err error) bool {
	var te *temporal.TimeoutError
	return errors.As(err, &te) && te.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START
}

// nodeCause is what staff should read about a node's failure.
func nodeCause(err error) string {
	var te *temporal.TimeoutError
	if errors.As(err, &te) {
		switch te.TimeoutType() {
		case enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START:
			return "the node took no task (is its lbnode worker running?)"
		case enumspb.TIMEOUT_TYPE_START_TO_CLOSE, enumspb.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE:
			return "the node did not answer in time"
		}
	}
	return steprunner.Cause(err)
}

func sameSpec(a, b *lbapi.VIPSpec) bool {
	if a == nil || b == nil {
		return a == b
	}
	return specDigest(*a) == specDigest(*b)
}

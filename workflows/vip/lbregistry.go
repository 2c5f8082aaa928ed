package vip

import (
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/internal/options"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// registryHeartbeatsPerRun bounds one registry run's history: at one
// heartbeat every 15 s a run lasts about four hours before it continues as
// new with what it knows.
const registryHeartbeatsPerRun = 1000

// registryGiveUpAfter ends the registry of a node silent this long (taken
// away, renamed): its row stays down, and its next heartbeat starts a new
// registry through signal-with-start.
const registryGiveUpAfter = 24 * time.Hour

// LBNodeRegistry records one LB node in the inventory from its heartbeats.
// Most heartbeats say nothing new: they are written only when something
// changed or the row is due a refresh, so the history stays small. A node
// silent for three heartbeat intervals is recorded down; a node that says
// it is stopping is recorded so and the registry ends.
func LBNodeRegistry(ctx workflow.Context, in vipapi.LBNodeRegistryInput) (vipapi.LBNodeRegistryState, error) {
	r := &registry{state: vipapi.LBNodeRegistryState{Cluster: in.Cluster, Node: in.Node}}
	if in.Carried != nil {
		r.state = *in.Carried
		r.state.Heartbeats = 0
	}
	if err := workflow.SetQueryHandler(ctx, stepapi.QueryStatus, func() (vipapi.LBNodeRegistryState, error) { return r.state, nil }); err != nil {
		return r.state, err
	}
	return r.run(ctx)
}

type registry struct {
	state vipapi.LBNodeRegistryState
}

func (r *registry) run(ctx workflow.Context) (vipapi.LBNodeRegistryState, error) {
	heartbeats := workflow.GetSignalChannel(ctx, lbapi.SignalHeartbeat)
	silence := 3 * vipapi.LBHeartbeatInterval
	for {
		// One timer at a time, re-armed when it fires rather than
		// cancelled on every heartbeat: two history events per silence
		// window instead of two per heartbeat.
		wait := silence
		if !r.state.LastSeen.IsZero() {
			wait = r.state.LastSeen.Add(silence).Sub(workflow.Now(ctx))
		}
		if r.state.Down {
			// Nothing to detect until it speaks again but the give-up.
			wait = registryGiveUpAfter
		} else if wait <= 0 {
			wait = silence
		}
		timerCtx, cancel := workflow.WithCancel(ctx)
		timer := workflow.NewTimer(timerCtx, wait)
		deadline := workflow.Now(ctx).Add(wait)
		var hb *lbapi.NodeHeartbeat
		fired, rearm := false, false
		for hb == nil && !fired && !rearm {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(heartbeats, func(c workflow.ReceiveChannel, _ bool) {
				var got lbapi.NodeHeartbeat
				c.Receive(ctx, &got)
				hb = &got
			})
			sel.AddFuture(timer, func(workflow.Future) { fired = true })
			sel.Select(ctx)
			if hb != nil {
				stop, err := r.heartbeat(ctx, *hb)
				if err != nil || stop {
					cancel()
					return r.state, err
				}
				if r.state.Heartbeats >= registryHeartbeatsPerRun || workflow.GetInfo(ctx).GetContinueAsNewSuggested() {
					cancel()
					return r.continueAsNew(ctx, heartbeats)
				}
				// Keep the timer unless it would now fire too late (the
				// node spoke again after being recorded down).
				rearm = deadline.After(r.state.LastSeen.Add(silence))
				hb = nil
				continue
			}
		}
		cancel()
		if rearm {
			continue
		}
		if err := r.checkSilence(ctx); err != nil {
			return r.state, err
		}
		if r.state.Down && workflow.Now(ctx).Sub(r.state.LastSeen) >= registryGiveUpAfter {
			return r.state, nil
		}
	}
}

// heartbeat takes one heartbeat in; stop says the node is shutting down.
func (r *registry) heartbeat(ctx workflow.Context, hb lbapi.NodeHeartbeat) (stop bool, err error) {
	if hb.Cluster == "" {
		hb.Cluster = r.state.Cluster
	}
	if hb.Node == "" {
		hb.Node = r.state.Node
	}
	if hb.Cluster == "" || hb.Node == "" {
		workflow.GetLogger(ctx).Warn("ignoring a heartbeat that names no cluster or node")
		return false, nil
	}
	r.state.Cluster, r.state.Node = hb.Cluster, hb.Node
	r.state.Last, r.state.LastSeen = hb, workflow.Now(ctx)
	r.state.Heartbeats++
	if r.changed(hb) || r.state.Down || workflow.Now(ctx).Sub(r.state.RecordedAt) >= vipapi.LBNodeRefreshInterval {
		wasUp := r.up()
		if err := r.record(ctx, false); err != nil {
			return false, err
		}
		if !wasUp && r.up() {
			r.announceUp(ctx)
		}
	}
	return hb.Stopping, nil
}

// up says the node was last recorded up: heard of, healthy, not stopping.
func (r *registry) up() bool {
	p := r.state.Recorded
	return p != nil && !r.state.Down && p.Healthy && !p.Stopping
}

// announceUp tells the VIPs placed on the node's cluster that the node
// came up, so that a node added to a cluster, or back after being down or
// reinstalled, runs its cluster's VIPs without waiting for them to change.
// A VIP that cannot be told (retired meanwhile) is skipped: the node's own
// reconcile drops what no VIP wants.
func (r *registry) announceUp(ctx workflow.Context) {
	if workflow.GetVersion(ctx, "announce-node-up", workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	log := workflow.GetLogger(ctx)
	var res vipapi.ListPlacedVIPsResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), vipapi.ListPlacedVIPsName,
		vipapi.ListPlacedVIPsInput{Cluster: r.state.Cluster}).Get(ctx, &res); err != nil {
		log.Warn("could not list the cluster's VIPs to tell them a node came up", "cluster", r.state.Cluster, "node", r.state.Node, "error", err)
		return
	}
	up := vipapi.NodeUp{Cluster: r.state.Cluster, Node: r.state.Node}
	sent := make([]workflow.Future, len(res.Names))
	for i, name := range res.Names {
		sent[i] = workflow.SignalExternalWorkflow(ctx, lbapi.VIPWorkflowID(name), "", vipapi.SignalNodeUp, up)
	}
	for i, f := range sent {
		if err := f.Get(ctx, nil); err != nil {
			log.Info("could not tell a VIP that a node came up", "vip", res.Names[i], "node", up.Cluster+"/"+up.Node, "error", err)
		}
	}
}

func (r *registry) changed(hb lbapi.NodeHeartbeat) bool {
	p := r.state.Recorded
	return p == nil || p.FailureDomain != hb.FailureDomain || p.Capacity != hb.Capacity || p.VIPs != hb.VIPs ||
		p.Healthy != hb.Healthy || p.Stopping != hb.Stopping
}

// checkSilence runs when the timer fires: a node not heard of for three
// heartbeat intervals is recorded down, once.
func (r *registry) checkSilence(ctx workflow.Context) error {
	if r.state.Down || r.state.LastSeen.IsZero() {
		return nil
	}
	if workflow.Now(ctx).Sub(r.state.LastSeen) < 3*vipapi.LBHeartbeatInterval {
		return nil
	}
	workflow.GetLogger(ctx).Warn("LB node fell silent", "cluster", r.state.Cluster, "node", r.state.Node, "lastSeen", r.state.LastSeen)
	return r.record(ctx, true)
}

func (r *registry) record(ctx workflow.Context, silent bool) error {
	hb := r.state.Last
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), vipapi.RecordLBNodeName,
		vipapi.RecordLBNodeInput{Heartbeat: hb, SeenAt: r.state.LastSeen, Silent: silent}).Get(ctx, nil)
	if err != nil {
		return err
	}
	r.state.Recorded, r.state.RecordedAt, r.state.Down = &hb, workflow.Now(ctx), silent
	return nil
}

// continueAsNew hands the state to a fresh run, with every heartbeat
// already delivered taken in first so none is lost between the runs.
func (r *registry) continueAsNew(ctx workflow.Context, heartbeats workflow.ReceiveChannel) (vipapi.LBNodeRegistryState, error) {
	for {
		var hb lbapi.NodeHeartbeat
		if !heartbeats.ReceiveAsync(&hb) {
			break
		}
		stop, err := r.heartbeat(ctx, hb)
		if err != nil || stop {
			return r.state, err
		}
	}
	carried := r.state
	return r.state, workflow.NewContinueAsNewError(ctx, lbapi.RegistryWorkflowName, vipapi.LBNodeRegistryInput{
		Cluster: r.state.Cluster, Node: r.state.Node, Carried: &carried,
	})
}

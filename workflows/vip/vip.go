package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/internal/options"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/steprunner"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// VIPRollout places a VIP, rolls it out cluster by cluster with a canary
// node first, waits for approval before a public VIP is announced beyond
// the internal peers, and then runs it: backend changes, backend health
// seen by any node, retirement.
func VIPRollout(ctx workflow.Context, in vipapi.VIPRolloutInput) (vipapi.VIPStatus, error) {
	in = vipapi.NormalizeVIPInput(in)
	if err := vipapi.ValidateVIPInput(in); err != nil {
		return vipapi.VIPStatus{Name: in.Name, State: serverapi.StateFailed}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidInput", nil)
	}
	v := newVIP(in, workflow.GetInfo(ctx).WorkflowExecution.RunID)
	if in.Resume != nil {
		v.state = *in.Resume
		v.in.Resume = nil
	} else {
		v.state.State = vipapi.VIPStatePlacing
		for _, b := range in.Backends {
			v.state.Backends = append(v.state.Backends, vipapi.VIPBackend{Backend: b})
		}
	}
	if err := v.registerHandlers(ctx); err != nil {
		return v.status(), err
	}
	err := v.run(ctx)
	if err != nil && !temporal.IsCanceledError(err) && !isContinueAsNew(err) {
		v.state.State = serverapi.StateFailed
	}
	// Let in-flight updates deliver their answers before the run ends.
	if werr := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); werr != nil && err == nil {
		err = werr
	}
	return v.status(), err
}

func isContinueAsNew(err error) bool {
	var can *workflow.ContinueAsNewError
	return errors.As(err, &can)
}

// vip is the state of one VIP's workflow; the status query reads it.
type vip struct {
	in    vipapi.VIPRolloutInput
	state vipapi.VIPState
	runID string
	// runner runs a change's step and holds staff's decision (retry or
	// abort); attention is set while it waits for one, and parkedIn is
	// the state to go back to.
	runner    steprunner.Runner[struct{}]
	attention *stepapi.Attention
	parkedIn  string
	// op is the change an update asked for, run by the main loop.
	op *vipOp
	// healthDirty says a backend went down or came back since the nodes
	// were last updated.
	healthDirty bool
	health      workflow.ReceiveChannel
	nodeUp      workflow.ReceiveChannel
}

// vipOp is one update's change; its handler waits for it to finish or to
// park in attention.
type vipOp struct {
	step     string
	by       string
	backends vipapi.BackendsInput
	// final is the state a retire ends in: retired, or rejected.
	final  string
	done   bool
	parked bool
	err    error
}

func newVIP(in vipapi.VIPRolloutInput, runID string) *vip {
	v := &vip{in: in, runID: runID}
	v.runner = steprunner.Runner[struct{}]{
		Subject: "VIP", SubjectKV: []any{"vip", in.Name},
		Park: func(_ workflow.Context, a stepapi.Attention) error {
			v.parkedIn, v.state.State, v.attention = v.state.State, vipapi.VIPStateAttention, &a
			// The update that asked for the change answers now.
			if v.op != nil {
				v.op.parked = true
			}
			return nil
		},
		Resume: func(workflow.Context) error {
			v.state.State, v.attention = v.parkedIn, nil
			return nil
		},
	}
	return v
}

func (v *vip) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, stepapi.QueryStatus, func() (vipapi.VIPStatus, error) { return v.status(), nil }); err != nil {
		return fmt.Errorf("register %s query: %w", stepapi.QueryStatus, err)
	}
	if err := workflow.SetQueryHandler(ctx, lbapi.QueryWantsNode, func(in lbapi.WantsNodeInput) (bool, error) {
		return v.wants(in.Cluster, in.Node), nil
	}); err != nil {
		return fmt.Errorf("register %s query: %w", lbapi.QueryWantsNode, err)
	}
	for _, u := range []struct {
		name    string
		handler any
		valid   any
	}{
		{vipapi.UpdateApprove, v.handleApprove, v.validateApprove},
		{vipapi.UpdateReject, v.handleReject, v.validateReject},
		{vipapi.UpdateBackends, v.handleBackends, v.validateBackends},
		{vipapi.UpdateRetire, v.handleRetire, v.validateRetire},
		{stepapi.UpdateRetry, v.handleRetry, v.validateRetry},
		{stepapi.UpdateAbort, v.handleAbort, v.validateAbort},
		{vipapi.UpdateReport, v.handleReport, func() error { return nil }},
	} {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, u.handler, workflow.UpdateHandlerOptions{Validator: u.valid}); err != nil {
			return fmt.Errorf("register %s update: %w", u.name, err)
		}
	}
	v.health = workflow.GetSignalChannel(ctx, lbapi.SignalBackendHealth)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var c lbapi.BackendHealthChange
			if !v.health.Receive(ctx, &c) {
				return
			}
			v.takeHealth(ctx, c)
		}
	})
	v.nodeUp = workflow.GetSignalChannel(ctx, vipapi.SignalNodeUp)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var up vipapi.NodeUp
			if !v.nodeUp.Receive(ctx, &up) {
				return
			}
			v.takeNodeUp(ctx, up)
		}
	})
	return nil
}

func (v *vip) run(ctx workflow.Context) error {
	if v.state.Address == "" {
		err := v.establish(ctx)
		if errors.Is(err, steprunner.ErrAborted) {
			return v.retire(ctx, vipapi.VIPStateAborted)
		}
		if err != nil {
			return err
		}
	}
	for !v.final() {
		if err := workflow.Await(ctx, func() bool {
			return v.op != nil || v.healthDirty || v.joinDue() || workflow.GetInfo(ctx).GetContinueAsNewSuggested()
		}); err != nil {
			return err
		}
		switch {
		case v.op != nil:
			op := v.op
			op.err = v.process(ctx, op)
			op.done, v.op = true, nil
		case v.healthDirty:
			if err := v.applyHealth(ctx); err != nil {
				return err
			}
		case v.joinDue():
			if err := v.joinNodes(ctx); err != nil {
				return err
			}
		default:
			if err := v.continueAsNew(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// establish resolves, allocates, places and rolls out a new VIP.
func (v *vip) establish(ctx workflow.Context) error {
	if len(v.in.Servers) > 0 {
		resolved, err := v.resolve(ctx, v.in.Servers)
		if err != nil {
			// An unknown server is bad input: fail before anything is held.
			return temporal.NewNonRetryableApplicationError(steprunner.Cause(err), "InvalidInput", nil)
		}
		for _, b := range resolved {
			if slices.ContainsFunc(v.state.Backends, func(x vipapi.VIPBackend) bool { return x.Address == b.Address }) {
				return temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("server %s resolves to %s, which is also listed as a backend", b.Serial, b.Address), "InvalidInput", nil)
			}
			v.state.Backends = append(v.state.Backends, b)
		}
	}
	v.sortBackends()
	v.checkSpread()
	if err := v.runner.RunStep(ctx, steprunner.Step{Name: vipapi.VIPStepAllocateAddress, Run: v.allocate}); err != nil {
		return err
	}
	if err := v.record(ctx); err != nil {
		return err
	}
	if err := v.runner.RunStep(ctx, steprunner.Step{Name: vipapi.VIPStepPlace, Run: v.place}); err != nil {
		return err
	}
	attempt := 0
	if err := v.runner.RunStep(ctx, steprunner.Step{Name: vipapi.VIPStepRollOut, Run: func(ctx workflow.Context) error {
		attempt++
		// A retry after a rollback that left the VIP nowhere may as well
		// go where the platform would place it now: the cluster that
		// failed may have been marked down since.
		if attempt > 1 && !v.heldAnywhere() {
			if err := v.place(ctx); err != nil {
				return err
			}
		}
		v.state.State = vipapi.VIPStateRollingOut
		v.healthDirty = false
		return v.rollOut(ctx, v.spec(lbapi.AnnounceInternal), lbapi.AnnounceNone)
	}}); err != nil {
		return err
	}
	v.state.Announce = lbapi.AnnounceInternal
	v.state.State = v.stableState()
	return v.record(ctx)
}

func (v *vip) process(ctx workflow.Context, op *vipOp) error {
	switch op.step {
	case vipapi.VIPStepPublish:
		return v.publish(ctx, op)
	case vipapi.VIPStepBackends:
		return v.changeBackends(ctx, op)
	case vipapi.VIPStepRetire:
		return v.retire(ctx, op.final)
	}
	return fmt.Errorf("unknown change %q", op.step)
}

// publish announces an approved public VIP to the external peers, with the
// same canary discipline as the first rollout. It is the only place a
// public announcement is built.
func (v *vip) publish(ctx workflow.Context, op *vipOp) error {
	v.state.ApprovedBy = op.by
	v.state.State = vipapi.VIPStatePublishing
	err := v.runner.RunStep(ctx, steprunner.Step{Name: vipapi.VIPStepPublish, Run: func(ctx workflow.Context) error {
		v.healthDirty = false
		return v.rollOut(ctx, v.spec(lbapi.AnnouncePublic), lbapi.AnnouncePublic)
	}})
	if errors.Is(err, steprunner.ErrAborted) {
		v.state.ApprovedBy = ""
		v.state.State = v.stableState()
		return errors.New("the publication was aborted: the VIP stays internal and awaits approval again")
	}
	if err != nil {
		return err
	}
	v.state.Announce = lbapi.AnnouncePublic
	v.state.State = v.stableState()
	return v.record(ctx)
}

func (v *vip) changeBackends(ctx workflow.Context, op *vipOp) error {
	in := op.backends
	prev := slices.Clone(v.state.Backends)
	var added []vipapi.VIPBackend
	for _, b := range vipapi.NormalizeBackends(in.Add) {
		added = append(added, vipapi.VIPBackend{Backend: b})
	}
	if len(in.Servers) > 0 {
		resolved, err := v.resolve(ctx, in.Servers)
		if err != nil {
			return temporal.NewNonRetryableApplicationError(steprunner.Cause(err), "InvalidInput", nil)
		}
		added = append(added, resolved...)
	}
	next := make([]vipapi.VIPBackend, 0, len(prev)+len(added))
	for _, b := range prev {
		if slices.ContainsFunc(in.Remove, func(r string) bool { return sameAddr(r, b.Address) }) ||
			slices.ContainsFunc(added, func(a vipapi.VIPBackend) bool { return a.Address == b.Address }) {
			continue
		}
		next = append(next, b)
	}
	next = append(next, added...)
	for i := range next {
		if slices.ContainsFunc(in.Drain, func(d string) bool { return sameAddr(d, next[i].Address) }) {
			next[i].State = lbapi.BackendDrain
		}
	}
	v.state.Backends = next
	v.sortBackends()
	stable := v.state.State
	v.state.State = vipapi.VIPStateUpdating
	err := v.runner.RunStep(ctx, steprunner.Step{Name: vipapi.VIPStepBackends, Run: func(ctx workflow.Context) error {
		v.healthDirty = false
		return v.rollOut(ctx, v.spec(v.state.Announce), v.state.Announce)
	}})
	v.state.State = stable
	if errors.Is(err, steprunner.ErrAborted) {
		v.state.Backends = prev
		return errors.New("the backends change was aborted: the VIP keeps its previous backends")
	}
	if err != nil {
		return err
	}
	v.checkSpread()
	return v.record(ctx)
}

func sameAddr(a, b string) bool {
	x, err1 := netip.ParseAddr(a)
	y, err2 := netip.ParseAddr(b)
	return err1 == nil && err2 == nil && x == y
}

// applyHealth drains the backends some node reports down, and restores
// those back up, on every node of every cluster.
func (v *vip) applyHealth(ctx workflow.Context) error {
	if !v.stable() {
		v.healthDirty = false
		return nil
	}
	stable := v.state.State
	v.state.State = vipapi.VIPStateUpdating
	err := v.runner.RunStep(ctx, steprunner.Step{Name: vipapi.VIPStepBackendHealth, Run: func(ctx workflow.Context) error {
		v.healthDirty = false
		return v.rollOut(ctx, v.spec(v.state.Announce), v.state.Announce)
	}})
	v.state.State = stable
	if errors.Is(err, steprunner.ErrAborted) {
		v.warn("a backend health change was not applied (aborted); the next change applies it")
		return nil
	}
	return err
}

// retire removes the VIP from every node that holds it, then frees its
// address; nothing is released while a node may still run it. An abort of
// a stuck retire forgets only the nodes the inventory reports down (their
// agents withdraw their routes when they stop): forgetting a node that
// still answers, and handing its address to another VIP, would route one
// address to two services.
func (v *vip) retire(ctx workflow.Context, final string) error {
	v.state.State = vipapi.VIPStateRetiring
	for {
		err := v.runner.RunStep(ctx, steprunner.Step{Name: vipapi.VIPStepRetire, Run: func(ctx workflow.Context) error {
			if err := v.removeEverywhere(ctx); err != nil {
				return err
			}
			if v.state.Address == "" {
				return nil
			}
			return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), vipapi.ReleaseVIPName,
				vipapi.ReleaseVIPInput{Name: v.in.Name}).Get(ctx, nil)
		}})
		if errors.Is(err, steprunner.ErrAborted) {
			if err := v.forgetDownNodes(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		v.state.State, v.state.Announce = final, ""
		return nil
	}
}

// forgetDownNodes drops the nodes that hold the VIP, or may, and that the
// inventory reports down or no longer knows.
func (v *vip) forgetDownNodes(ctx workflow.Context) error {
	var res vipapi.ListLBClustersResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), vipapi.ListLBClustersName,
		vipapi.ListLBClustersInput{}).Get(ctx, &res); err != nil {
		return err
	}
	up := map[string]bool{}
	for _, c := range res.Clusters {
		for _, n := range c.Nodes {
			up[c.Name+"/"+n.Node] = n.Up
		}
	}
	for i := range v.state.Nodes {
		n := &v.state.Nodes[i]
		if (n.Spec != nil || n.Unsure) && !up[n.Key()] {
			n.Spec, n.Unsure, n.State = nil, false, vipapi.NodeForgotten
			v.warn(fmt.Sprintf("node %s was down when the VIP was retired and was forgotten: if it comes back, remove VIP %s from it", n.Key(), v.in.Name))
		}
	}
	return nil
}

func (v *vip) allocate(ctx workflow.Context) error {
	var res vipapi.AllocateVIPAddressResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), vipapi.AllocateVIPAddressName,
		vipapi.AllocateVIPAddressInput{Name: v.in.Name, Exposure: v.in.Exposure}).Get(ctx, &res); err != nil {
		return err
	}
	v.state.Address = res.Address
	return nil
}

func (v *vip) place(ctx workflow.Context) error {
	var res vipapi.ListLBClustersResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), vipapi.ListLBClustersName,
		vipapi.ListLBClustersInput{}).Get(ctx, &res); err != nil {
		return err
	}
	placed, notes, err := choosePlacement(res.Clusters, v.in.Clusters)
	if err != nil {
		return err
	}
	v.state.Placement = placed
	for _, n := range notes {
		v.warn(n)
	}
	return nil
}

func (v *vip) resolve(ctx workflow.Context, serials []string) ([]vipapi.VIPBackend, error) {
	var res vipapi.ResolveServersResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), vipapi.ResolveServersName,
		vipapi.ResolveServersInput{Serials: serials}).Get(ctx, &res); err != nil {
		return nil, err
	}
	out := make([]vipapi.VIPBackend, 0, len(res.Servers))
	for _, s := range res.Servers {
		out = append(out, vipapi.VIPBackend{
			Backend:       lbapi.Backend{Address: s.Address, Weight: vipapi.DefaultBackendWeight, State: lbapi.BackendActive, Serial: s.Serial},
			FailureDomain: s.FailureDomain,
		})
	}
	return out, nil
}

func (v *vip) record(ctx workflow.Context) error {
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), vipapi.RecordVIPName,
		vipapi.RecordVIPInput{
			Name: v.in.Name, State: v.state.State, RequestedBy: v.in.RequestedBy, ApprovedBy: v.state.ApprovedBy,
			Spec: v.spec(v.state.Announce), Placement: v.state.Placement,
		}).Get(ctx, nil)
}

// continueAsNew hands the VIP to a fresh run once the history is long,
// with every health signal already delivered taken in first.
func (v *vip) continueAsNew(ctx workflow.Context) error {
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return err
	}
	for {
		var c lbapi.BackendHealthChange
		if !v.health.ReceiveAsync(&c) {
			break
		}
		v.takeHealth(ctx, c)
	}
	for {
		var up vipapi.NodeUp
		if !v.nodeUp.ReceiveAsync(&up) {
			break
		}
		v.takeNodeUp(ctx, up)
	}
	if v.healthDirty || v.op != nil || v.joinDue() {
		return nil
	}
	in := v.in
	carried := v.state
	in.Resume = &carried
	return workflow.NewContinueAsNewError(ctx, vipapi.VIPRolloutName, in)
}

// spec is what every node should run, with announce: the desired backends,
// those some node reports down drained.
func (v *vip) spec(announce string) lbapi.VIPSpec {
	bs := make([]lbapi.Backend, 0, len(v.state.Backends))
	for _, b := range v.state.Backends {
		e := b.Backend
		if len(b.DownOn) > 0 {
			e.State = lbapi.BackendDrain
		}
		bs = append(bs, e)
	}
	return lbapi.VIPSpec{
		Name: v.in.Name, Address: v.state.Address, Protocol: v.in.Protocol, Ports: slices.Clone(v.in.Ports),
		Backends: bs, Announce: announce, HealthCheck: v.in.HealthCheck,
	}
}

func (v *vip) heldAnywhere() bool {
	return slices.ContainsFunc(v.state.Nodes, func(n vipapi.VIPNode) bool { return n.Spec != nil || n.Unsure })
}

func (v *vip) sortBackends() {
	slices.SortFunc(v.state.Backends, func(a, b vipapi.VIPBackend) int { return strings.Compare(a.Address, b.Address) })
}

// checkSpread replaces the spread warning: a backends change may have
// fixed it, or made it.
func (v *vip) checkSpread() {
	v.state.Warnings = slices.DeleteFunc(v.state.Warnings, func(w string) bool { return strings.HasPrefix(w, spreadWarningPrefix) })
	if w := spreadWarning(v.state.Backends); w != "" {
		v.warn(w)
	}
}

func (v *vip) warn(w string) {
	if !slices.Contains(v.state.Warnings, w) {
		v.state.Warnings = append(v.state.Warnings, w)
	}
}

func (v *vip) status() vipapi.VIPStatus {
	st := vipapi.VIPStatus{
		Name: v.in.Name, RunID: v.runID, Address: v.state.Address, Exposure: v.in.Exposure, State: v.state.State,
		Protocol: v.in.Protocol, Ports: v.in.Ports, Announce: v.state.Announce, HealthCheck: v.in.HealthCheck,
		Warnings: v.state.Warnings, RequestedBy: v.in.RequestedBy, ApprovedBy: v.state.ApprovedBy, Attention: v.attention,
		Placement: []vipapi.ClusterPlacement{}, Backends: []vipapi.BackendStatus{},
		AwaitingApproval: v.in.Exposure == lbapi.ExposurePublic && v.state.ApprovedBy == "" && !v.final(),
	}
	if v.state.Address != "" && !v.final() {
		st.Digest = specDigest(v.spec(v.state.Announce))
	}
	for _, c := range v.state.Placement {
		cp := vipapi.ClusterPlacement{Cluster: c.Cluster, FailureDomain: c.FailureDomain, Nodes: []vipapi.NodePlacement{}}
		for _, name := range c.Nodes {
			np := vipapi.NodePlacement{Node: name, State: vipapi.NodePending}
			if i := slices.IndexFunc(v.state.Nodes, func(n vipapi.VIPNode) bool { return n.Cluster == c.Cluster && n.Node == name }); i >= 0 {
				np.State, np.Digest = v.state.Nodes[i].State, v.state.Nodes[i].Digest
			}
			cp.Nodes = append(cp.Nodes, np)
		}
		st.Placement = append(st.Placement, cp)
	}
	for _, b := range v.state.Backends {
		bs := vipapi.BackendStatus{Backend: b.Backend, FailureDomain: b.FailureDomain, Health: vipapi.BackendUp, DownOn: b.DownOn}
		if len(b.DownOn) > 0 {
			bs.Health = vipapi.BackendDown
		}
		st.Backends = append(st.Backends, bs)
	}
	return st
}

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
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/steprunner"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// What reaches a running VIP: the updates' validators and handlers, and
// the backend-health signal. Handlers only hand changes to the main loop
// (vip.go) and wait for them; the loop does the work.

// stable says the VIP runs and takes changes.
func (v *vip) stable() bool {
	return v.state.State == vipapi.VIPStateActive || v.state.State == vipapi.VIPStateAwaitingApproval
}

// wants says whether the VIP belongs on a node: one of its placement, or
// one it was applied to and has not removed from yet (the workflow will see
// to that itself). A node holding a VIP its workflow does not want there
// missed a removal, e.g. a retire while it was down.
func (v *vip) wants(cluster, node string) bool {
	if v.final() {
		return false
	}
	for _, c := range v.state.Placement {
		if c.Cluster == cluster && slices.Contains(c.Nodes, node) {
			return true
		}
	}
	return slices.ContainsFunc(v.state.Nodes, func(n vipapi.VIPNode) bool { return n.Cluster == cluster && n.Node == node })
}

func (v *vip) final() bool {
	switch v.state.State {
	case vipapi.VIPStateRetired, vipapi.VIPStateRejected, vipapi.VIPStateAborted:
		return true
	}
	return false
}

// stableState is where a VIP rests: a public VIP not yet published waits
// for its approval.
func (v *vip) stableState() string {
	if v.in.Exposure == lbapi.ExposurePublic && v.state.Announce != lbapi.AnnouncePublic {
		return vipapi.VIPStateAwaitingApproval
	}
	return vipapi.VIPStateActive
}

func (v *vip) busy() error {
	if v.op != nil || !v.stable() {
		return fmt.Errorf("VIP %s is %s: it takes no other change now", v.in.Name, v.state.State)
	}
	return nil
}

func (v *vip) checkDecider(by, role, what string) error {
	switch {
	case by == "":
		return fmt.Errorf("to %s a VIP, say who you are (by)", what)
	case strings.EqualFold(by, v.in.RequestedBy):
		return fmt.Errorf("%s requested VIP %s and cannot %s it: someone else must", by, v.in.Name, what)
	case role != vipapi.RoleApprover && role != vipapi.RoleAdmin:
		return fmt.Errorf("role %q may not %s a public VIP: %s or %s needed", role, what, vipapi.RoleApprover, vipapi.RoleAdmin)
	}
	return nil
}

func (v *vip) validateApprove(in vipapi.ApproveInput) error {
	if v.state.State != vipapi.VIPStateAwaitingApproval || v.op != nil {
		return fmt.Errorf("VIP %s is %s: nothing awaits approval", v.in.Name, v.state.State)
	}
	return v.checkDecider(in.By, in.Role, "approve")
}

func (v *vip) handleApprove(ctx workflow.Context, in vipapi.ApproveInput) (vipapi.VIPStatus, error) {
	if err := v.validateApprove(in); err != nil {
		return vipapi.VIPStatus{}, err
	}
	op := &vipOp{step: vipapi.VIPStepPublish, by: in.By}
	v.op = op
	return v.awaitOp(ctx, op)
}

func (v *vip) validateReject(in vipapi.RejectInput) error {
	if v.state.State != vipapi.VIPStateAwaitingApproval || v.op != nil {
		return fmt.Errorf("VIP %s is %s: nothing awaits approval", v.in.Name, v.state.State)
	}
	return v.checkDecider(in.By, in.Role, "reject")
}

func (v *vip) handleReject(ctx workflow.Context, in vipapi.RejectInput) (vipapi.VIPStatus, error) {
	if err := v.validateReject(in); err != nil {
		return vipapi.VIPStatus{}, err
	}
	op := &vipOp{step: vipapi.VIPStepRetire, by: in.By, final: vipapi.VIPStateRejected}
	workflow.GetLogger(ctx).Info("public VIP rejected", "vip", v.in.Name, "by", in.By, "reason", in.Reason)
	v.op = op
	return v.awaitOp(ctx, op)
}

func (v *vip) validateBackends(in vipapi.BackendsInput) error {
	if err := v.busy(); err != nil {
		return err
	}
	return vipapi.ValidateBackendsChange(in, v.state.Backends)
}

func (v *vip) handleBackends(ctx workflow.Context, in vipapi.BackendsInput) (vipapi.VIPStatus, error) {
	if err := v.validateBackends(in); err != nil {
		return vipapi.VIPStatus{}, err
	}
	op := &vipOp{step: vipapi.VIPStepBackends, by: in.By, backends: in}
	v.op = op
	return v.awaitOp(ctx, op)
}

func (v *vip) validateRetire(vipapi.RetireInput) error { return v.busy() }

func (v *vip) handleRetire(ctx workflow.Context, in vipapi.RetireInput) (vipapi.VIPStatus, error) {
	if err := v.validateRetire(in); err != nil {
		return vipapi.VIPStatus{}, err
	}
	op := &vipOp{step: vipapi.VIPStepRetire, by: in.By, final: vipapi.VIPStateRetired}
	workflow.GetLogger(ctx).Info("VIP retired", "vip", v.in.Name, "by", in.By, "reason", in.Reason)
	v.op = op
	return v.awaitOp(ctx, op)
}

// awaitOp answers an update once its change is done, or with the reason
// it waits for attention (the change was rolled back meanwhile).
func (v *vip) awaitOp(ctx workflow.Context, op *vipOp) (vipapi.VIPStatus, error) {
	if err := workflow.Await(ctx, func() bool { return op.done || op.parked }); err != nil {
		return vipapi.VIPStatus{}, err
	}
	if !op.done && v.attention != nil {
		what := "did not complete and was rolled back"
		if op.step == vipapi.VIPStepRetire {
			what = "did not complete"
		}
		return v.status(), temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s %s; VIP %s waits for attention (retry or abort): %s",
				op.step, what, v.in.Name, v.attention.Error), "VIPAttention", nil)
	}
	if op.err != nil {
		return v.status(), op.err
	}
	return v.status(), nil
}

func (v *vip) validateRetry(in serverapi.RetryInput) error {
	if !v.runner.Awaiting() {
		return fmt.Errorf("VIP %s is %s, not waiting for attention: nothing to retry", v.in.Name, v.state.State)
	}
	if in.BMC != nil || in.Profile != "" {
		return errors.New("a VIP has no BMC or profile to change")
	}
	return nil
}

func (v *vip) handleRetry(ctx workflow.Context, in serverapi.RetryInput) (stepapi.DecisionResult, error) {
	if err := v.validateRetry(in); err != nil {
		return stepapi.DecisionResult{}, err
	}
	return v.runner.Answer(v.in.Name, steprunner.Decision[struct{}]{Action: steprunner.Retry, By: in.By})
}

func (v *vip) validateAbort(in stepapi.AbortInput) error {
	if in.Reason == "" {
		return errors.New("an abort needs a reason, for the record")
	}
	if !v.runner.Awaiting() {
		return fmt.Errorf("VIP %s is %s: abort is possible while it waits for attention", v.in.Name, v.state.State)
	}
	return nil
}

func (v *vip) handleAbort(ctx workflow.Context, in stepapi.AbortInput) (stepapi.DecisionResult, error) {
	if err := v.validateAbort(in); err != nil {
		return stepapi.DecisionResult{}, err
	}
	return v.runner.Answer(v.in.Name, steprunner.Decision[struct{}]{Action: steprunner.Abort, By: in.By})
}

// takeHealth records one node's verdict on a backend. One node seeing a
// backend down is enough to drain it everywhere: the flows that node
// would send there are lost otherwise, and the nodes must agree on the
// backend set for their consistent hashing to agree.
func (v *vip) takeHealth(ctx workflow.Context, c lbapi.BackendHealthChange) {
	if c.VIP != "" && c.VIP != v.in.Name {
		return
	}
	addr := c.Backend
	if a, err := netip.ParseAddr(addr); err == nil {
		addr = a.String()
	}
	i := slices.IndexFunc(v.state.Backends, func(b vipapi.VIPBackend) bool { return b.Address == addr })
	if i < 0 {
		workflow.GetLogger(ctx).Info("health of a backend the VIP does not have", "vip", v.in.Name, "backend", c.Backend)
		return
	}
	b := &v.state.Backends[i]
	reporter := c.Cluster + "/" + c.Node
	wasDown := len(b.DownOn) > 0
	j, found := slices.BinarySearch(b.DownOn, reporter)
	switch {
	case c.Healthy && found:
		b.DownOn = slices.Delete(b.DownOn, j, j+1)
	case !c.Healthy && !found:
		b.DownOn = slices.Insert(b.DownOn, j, reporter)
	}
	if wasDown != (len(b.DownOn) > 0) {
		v.healthDirty = true
		workflow.GetLogger(ctx).Info("backend health changed", "vip", v.in.Name, "backend", addr, "down", len(b.DownOn) > 0, "reporter", reporter)
	}
}

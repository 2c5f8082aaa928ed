package server

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/internal/options"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/steprunner"
)

// Decommission takes a server out of service: out of the cloud, wiped,
// BIOS at defaults, off, out of monitoring, and, once a technician reports
// it unracked, out of its rack unit.
func Decommission(ctx workflow.Context, in serverapi.DecommissionInput) (serverapi.DecommissionStatus, error) {
	if err := stepapi.ValidateSerial(in.Serial); err != nil {
		return serverapi.DecommissionStatus{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidInput", nil)
	}
	d := newDecommission(in, workflow.GetInfo(ctx).WorkflowExecution.RunID)
	d.keepsAttributes = workflow.GetVersion(ctx, stateAttributesChange, workflow.DefaultVersion, 1) != workflow.DefaultVersion
	if err := d.registerHandlers(ctx); err != nil {
		return d.status, err
	}
	err := d.runner.Run(ctx, d.steps())
	if err != nil {
		// The attributes are best effort here: the run ends either way.
		if errors.Is(err, steprunner.ErrAborted) {
			_ = d.setState(ctx, serverapi.StateAborted)
			err = temporal.NewNonRetryableApplicationError("decommission aborted by staff: "+d.abortReason, "Aborted", nil)
		} else if !temporal.IsCanceledError(err) {
			_ = d.setState(ctx, serverapi.StateFailed)
		}
	} else {
		d.status.Step = ""
		if err = d.setStepAttribute(ctx, serverapi.StateDecommissioned); err == nil {
			err = d.setState(ctx, serverapi.StateDecommissioned)
		}
	}
	// Let in-flight updates deliver their answers before the run ends.
	if werr := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); werr != nil && err == nil {
		err = werr
	}
	return d.status, err
}

type decommission struct {
	in     serverapi.DecommissionInput
	status serverapi.DecommissionStatus
	// runner runs the steps and holds staff's decisions (retry or abort).
	runner      steprunner.Runner[serverapi.RetryInput]
	abortReason string
	// unracked is set by the technician's update while the workflow waits.
	unracked   *serverapi.UnrackedInput
	generation int
	// lifecycleEnd is how far a cancelled lifecycle had got; nil when the
	// lifecycle had finished before the decommission started.
	lifecycleEnd *serverapi.LifecycleEnd
	// keepsAttributes: the run keeps the server's state and step in its
	// search attributes, where the fleet list reads them.
	keepsAttributes bool
}

// stateAttributesChange: decommissions started before they kept the
// server's state in search attributes replay without the upserts.
const stateAttributesChange = "decommission-state-attributes"

func newDecommission(in serverapi.DecommissionInput, runID string) *decommission {
	d := &decommission{in: in}
	d.status = serverapi.DecommissionStatus{Serial: in.Serial, RunID: runID, State: serverapi.StateDecommissioning, Location: in.Location,
		Steps: d.steps().Pending()}
	d.runner = steprunner.Runner[serverapi.RetryInput]{
		Subject: "decommission", SubjectKV: []any{"serial", in.Serial},
		Record: func(name string) *stepapi.StepStatus { return stepRecord(d.status.Steps, name) },
		Started: func(ctx workflow.Context, name string) error {
			d.status.Step = name
			return d.setStepAttribute(ctx, name)
		},
		Park: func(ctx workflow.Context, a stepapi.Attention) error {
			d.status.Attention = &a
			return d.setState(ctx, serverapi.StateAttention)
		},
		Resume: func(ctx workflow.Context) error {
			d.status.Attention = nil
			return d.setState(ctx, serverapi.StateDecommissioning)
		},
		Retry: func(_ string, r serverapi.RetryInput) error {
			d.generation++
			d.in.BMC = mergeBMC(d.in.BMC, r.BMC)
			return nil
		},
	}
	return d
}

// DecommissionSteps lists the steps every decommission has, in order; one
// of a server still provisioning, or serving behind VIPs, has more first.
func DecommissionSteps() []string { return (&decommission{}).steps().Names() }

// steps is the decommission's table. No step is skippable: each stands
// between the server and someone else's hands.
func (d *decommission) steps() steprunner.Table {
	steps := steprunner.Table{
		{Name: serverapi.StepCancelProvisioning, Run: d.cancelProvisioning},
		{Name: serverapi.StepLeaveLoadBalancer, Run: d.leaveLoadBalancer},
		{Name: serverapi.StepLeaveAggregate, Run: d.leaveAggregate},
		{Name: serverapi.StepDeleteCloudNode, Run: d.activityStep(serverapi.DeleteCloudNodeName, options.Cloud())},
		{Name: serverapi.StepSecureWipe, Run: d.bmcStep(serverapi.WipeServerName, 2*time.Hour)},
		{Name: serverapi.StepResetBIOS, Run: d.bmcStep(serverapi.ResetBIOSDefaultsName, 15*time.Minute)},
		{Name: serverapi.StepPowerOff, Run: d.bmcStep(serverapi.PowerOffServerName, 5*time.Minute)},
		{Name: serverapi.StepRetireAsset, Run: d.activityStep(serverapi.RetireAssetName, options.Inventory())},
		{Name: serverapi.StepUnrack, Run: d.unrack},
	}
	if !d.in.CancelLifecycle {
		steps = steps.Without(serverapi.StepCancelProvisioning)
	}
	if len(d.in.Pools) == 0 {
		steps = steps.Without(serverapi.StepLeaveLoadBalancer)
	}
	return steps
}

func (d *decommission) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, stepapi.QueryStatus, func() (serverapi.DecommissionStatus, error) {
		return d.status, nil
	}); err != nil {
		return fmt.Errorf("register %s query: %w", stepapi.QueryStatus, err)
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, stepapi.UpdateRetry, d.handleRetry,
		workflow.UpdateHandlerOptions{Validator: d.validateRetry}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, stepapi.UpdateAbort, d.handleAbort,
		workflow.UpdateHandlerOptions{Validator: d.validateAbort}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, serverapi.UpdateUnracked, d.handleUnracked,
		workflow.UpdateHandlerOptions{Validator: d.validateUnracked})
}

func (d *decommission) validateRetry(in serverapi.RetryInput) error {
	if !d.runner.Awaiting() {
		return fmt.Errorf("the decommission of %s is %s, not waiting for attention: nothing to retry", d.in.Serial, d.status.State)
	}
	if in.Profile != "" {
		return errors.New("a decommission has no profile to change")
	}
	return checkRetryBMC(in)
}

func (d *decommission) handleRetry(ctx workflow.Context, in serverapi.RetryInput) (stepapi.DecisionResult, error) {
	if err := d.validateRetry(in); err != nil {
		return stepapi.DecisionResult{}, err
	}
	return d.runner.Answer(d.in.Serial, steprunner.Decision[serverapi.RetryInput]{Action: steprunner.Retry, By: in.By, Retry: in})
}

// validateAbort allows an abort only in attention: a decommission that
// runs is either wiping (which must not stop half-way unnoticed) or
// waiting for the technician, who should unrack instead.
func (d *decommission) validateAbort(in stepapi.AbortInput) error {
	if in.Reason == "" {
		return errors.New("an abort needs a reason, for the asset history")
	}
	if !d.runner.Awaiting() {
		return fmt.Errorf("the decommission of %s is %s: abort is possible while it waits for attention", d.in.Serial, d.status.State)
	}
	return nil
}

func (d *decommission) handleAbort(ctx workflow.Context, in stepapi.AbortInput) (stepapi.DecisionResult, error) {
	if err := d.validateAbort(in); err != nil {
		return stepapi.DecisionResult{}, err
	}
	res, err := d.runner.Answer(d.in.Serial, steprunner.Decision[serverapi.RetryInput]{Action: steprunner.Abort, By: in.By})
	if err == nil {
		d.abortReason = in.Reason
	}
	return res, err
}

// validateUnracked refuses the report until the server is wiped and off:
// a technician pulling a server still being erased would ship data.
func (d *decommission) validateUnracked(serverapi.UnrackedInput) error {
	if d.status.State != serverapi.StateWaitingUnrack || d.unracked != nil {
		return fmt.Errorf("the decommission of %s is %s (step %s), not waiting to be unracked", d.in.Serial, d.status.State, d.status.Step)
	}
	return nil
}

func (d *decommission) handleUnracked(ctx workflow.Context, in serverapi.UnrackedInput) (serverapi.UnrackedResult, error) {
	if err := d.validateUnracked(in); err != nil {
		return serverapi.UnrackedResult{}, err
	}
	d.unracked = &in
	// Answer once the unit is free, so a 200 means the rack shows it free.
	if err := workflow.Await(ctx, func() bool { return d.status.State != serverapi.StateWaitingUnrack }); err != nil {
		return serverapi.UnrackedResult{}, err
	}
	if d.status.State != serverapi.StateDecommissioned {
		return serverapi.UnrackedResult{}, fmt.Errorf("the rack unit of %s was not freed: %s", d.in.Serial, d.status.State)
	}
	return serverapi.UnrackedResult{Serial: d.in.Serial, Location: d.in.Location}, nil
}

// leaveLoadBalancer removes the server from each VIP it serves behind;
// each removal is the VIP's own change, rolled out to every node.
func (d *decommission) leaveLoadBalancer(ctx workflow.Context) error {
	for _, vip := range d.in.Pools {
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.LoadBalancer()), serverapi.LeaveLoadBalancerName,
			serverapi.LoadBalancerMembershipInput{Serial: d.in.Serial, VIP: vip, Actor: actorOr(d.in.Actor, "decommission")}).Get(ctx, nil)
		if err != nil {
			return err
		}
	}
	d.runner.Note("out of " + strings.Join(d.in.Pools, ", "))
	return nil
}

// lifecycleReportsEndChange: decommissions started before a cancelled
// lifecycle reported its end (SignalLifecycleEnded) found out by polling,
// and replay so.
const lifecycleReportsEndChange = "lifecycle-reports-end"

// lifecycleEndWait bounds the wait for a cancelled lifecycle's report. Its
// BMC activities stop first (they wait for their cancellation), which takes
// seconds; a lifecycle silent for this long is looked at directly.
const lifecycleEndWait = 30 * time.Minute

// cancelProvisioning cancels the server's running lifecycle and waits for
// it to end: its compensation withdraws the pending netboot, and none of
// its BMC activities still runs (they wait for their cancellation), so
// nothing the lifecycle does can overlap the wipe.
func (d *decommission) cancelProvisioning(ctx workflow.Context) error {
	lifecycle := serverapi.LifecycleWorkflowID(d.in.Serial)
	told := false
	if workflow.GetVersion(ctx, lifecycleReportsEndChange, workflow.DefaultVersion, 1) != workflow.DefaultVersion {
		// Where to report goes first, so the lifecycle has it when the
		// cancellation reaches it. A lifecycle that has ended cannot be
		// told: the look below finds out how it ended.
		told = workflow.SignalExternalWorkflow(ctx, lifecycle, "", serverapi.SignalDecommissioning,
			serverapi.Decommissioning{WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID}).Get(ctx, nil) == nil
	}
	// An error means the lifecycle ended already (or never existed).
	cancelled := workflow.RequestCancelExternalWorkflow(ctx, lifecycle, "").Get(ctx, nil) == nil
	if told && cancelled {
		end, err := d.awaitLifecycleEnd(ctx)
		if err != nil || end != nil {
			return err
		}
	}
	opts := workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Minute,
		HeartbeatTimeout:    20 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			NonRetryableErrorTypes: stepapi.NonRetryableErrorTypes(),
		},
	}
	var end serverapi.LifecycleEnd
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), serverapi.AwaitLifecycleEndName,
		serverapi.AwaitLifecycleEndInput{Serial: d.in.Serial}).Get(ctx, &end); err != nil {
		return err
	}
	d.ended(end)
	return nil
}

// awaitLifecycleEnd waits for the cancelled lifecycle's own report of how
// far it had got; nil if none came within lifecycleEndWait.
func (d *decommission) awaitLifecycleEnd(ctx workflow.Context) (*serverapi.LifecycleEnd, error) {
	var end *serverapi.LifecycleEnd
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	sel := workflow.NewSelector(ctx)
	sel.AddReceive(workflow.GetSignalChannel(ctx, serverapi.SignalLifecycleEnded), func(c workflow.ReceiveChannel, _ bool) {
		var e serverapi.LifecycleEnd
		c.Receive(ctx, &e)
		end = &e
	})
	sel.AddFuture(workflow.NewTimer(timerCtx, lifecycleEndWait), func(workflow.Future) {})
	sel.Select(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if end != nil {
		d.ended(*end)
	}
	return end, nil
}

func (d *decommission) ended(end serverapi.LifecycleEnd) {
	d.lifecycleEnd = &end
	d.runner.Note("provisioning ended " + end.State)
}

// untouched says the cancelled lifecycle never wrote to the server.
func (d *decommission) untouched() bool { return d.lifecycleEnd != nil && !d.lifecycleEnd.Touched }

// stepInput is the activities' input; Key is unique per run, step and
// retry, so each step's history line and BIOS reset happen once per try.
func (d *decommission) stepInput(ctx workflow.Context, step string) serverapi.DecommissionStepInput {
	in := serverapi.DecommissionStepInput{
		Serial: d.in.Serial, Host: d.in.Host, Actor: actorOr(d.in.Actor, "decommission"),
		Key: fmt.Sprintf("decommission/%s/%s/%d", workflow.GetInfo(ctx).WorkflowExecution.RunID, step, d.generation),
	}
	if in.Host == "" {
		in.Host = d.in.Serial
	}
	if d.in.BMC != nil {
		in.BMC = *d.in.BMC
	}
	if d.in.Location != nil {
		in.Site, in.Room, in.Rack = d.in.Location.Site, d.in.Location.Room, d.in.Location.Rack
	}
	return in
}

func (d *decommission) execute(ctx workflow.Context, opts workflow.ActivityOptions, name string) error {
	var res serverapi.DecommissionStepResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, opts), name, d.stepInput(ctx, name)).Get(ctx, &res); err != nil {
		return err
	}
	if res.Skipped {
		return steprunner.Skipped(res.Note)
	}
	d.runner.Note(res.Note)
	return nil
}

func (d *decommission) activityStep(name string, opts workflow.ActivityOptions) func(workflow.Context) error {
	return func(ctx workflow.Context) error { return d.execute(ctx, opts, name) }
}

func (d *decommission) bmcStep(name string, timeout time.Duration) func(workflow.Context) error {
	return func(ctx workflow.Context) error {
		if d.untouched() && name != serverapi.PowerOffServerName {
			return steprunner.Skipped("provisioning was cancelled before BIOS, RAID or the install wrote to the server")
		}
		if d.lifecycleEnd != nil && (d.in.BMC == nil || d.in.BMC.Address == "" || d.in.BMC.CredentialRef == "") {
			return steprunner.Skipped("no BMC was ever given for this server: provisioning was cancelled before inspection")
		}
		if d.in.BMC == nil || d.in.BMC.Address == "" || d.in.BMC.CredentialRef == "" {
			return errors.New("no BMC address and credential known for this server: retry with one")
		}
		return d.execute(ctx, options.BMC(timeout), name)
	}
}

// leaveAggregate: only hypervisors joined one.
func (d *decommission) leaveAggregate(ctx workflow.Context) error {
	if d.in.Role != profiles.RoleHypervisor {
		return steprunner.Skipped(fmt.Sprintf("role %q: only hypervisors are in a Nova aggregate", d.in.Role))
	}
	return d.execute(ctx, options.Cloud(), serverapi.LeaveAggregateName)
}

// unrack waits for the technician, then frees the rack unit.
func (d *decommission) unrack(ctx workflow.Context) error {
	if d.lifecycleEnd != nil && !d.lifecycleEnd.Racked {
		return steprunner.Skipped("provisioning was cancelled before the server was racked: no rack unit to free")
	}
	if err := d.setState(ctx, serverapi.StateWaitingUnrack); err != nil {
		return err
	}
	if err := workflow.Await(ctx, func() bool { return d.unracked != nil }); err != nil {
		return err
	}
	by := actorOr(d.unracked.By, "technician")
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), serverapi.ReleaseRackUnitName,
		serverapi.ReleaseRackUnitInput{Serial: d.in.Serial, Actor: by, Reason: "decommissioned and unracked"}).Get(ctx, nil)
	if err != nil {
		// Staff retry waits for nothing new: the server is out already.
		// The step's error is what staff need to see, not the upsert's.
		_ = d.setState(ctx, serverapi.StateDecommissioning)
		return err
	}
	d.runner.Note("unracked by " + by)
	return d.setState(ctx, serverapi.StateDecommissioned)
}

// setState changes the decommission's state and, for runs that keep them,
// the LifecycleState search attribute the fleet list reads the server's
// state from (serverapi.ServerState).
func (d *decommission) setState(ctx workflow.Context, state string) error {
	if d.status.State == state {
		return nil
	}
	d.status.State = state
	if !d.keepsAttributes {
		return nil
	}
	return workflow.UpsertTypedSearchAttributes(ctx, serverattrs.LifecycleState().ValueSet(state))
}

// setStepAttribute records the step (or the final state) and when it
// began, as the lifecycle does, so the list shows time in step for a
// server on its way out too.
func (d *decommission) setStepAttribute(ctx workflow.Context, step string) error {
	if !d.keepsAttributes {
		return nil
	}
	return workflow.UpsertTypedSearchAttributes(ctx, serverattrs.LifecycleStep().ValueSet(step),
		serverattrs.LifecycleStepStartedAt().ValueSet(workflow.Now(ctx)))
}

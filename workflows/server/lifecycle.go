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
	"github.com/metalflow/metalflow/workflows/rackbatch"
	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/steprunner"
)

// rackReminderInterval is how long a registered server may wait for a
// technician before the lifecycle nags (log line + metric), and again after.
const rackReminderInterval = 24 * time.Hour

// ServerLifecycle takes one server from the loading dock to an installed
// OS. It is the thin, registered entry point; the step machine lives in
// lifecycle.
func ServerLifecycle(ctx workflow.Context, in serverapi.ServerLifecycleInput) (serverapi.ServerStatus, error) {
	if err := stepapi.ValidateSerial(in.Serial); err != nil {
		return serverapi.ServerStatus{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidInput", nil)
	}
	if err := serverapi.ValidateTenant(in.Tenant); err != nil {
		return serverapi.ServerStatus{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidInput", nil)
	}
	if err := serverapi.ValidatePools(in.Pools); err != nil {
		return serverapi.ServerStatus{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidInput", nil)
	}
	l := newLifecycle(in)
	l.status.RunID = workflow.GetInfo(ctx).WorkflowExecution.RunID
	l.batch = batchOf(ctx, in)
	// Asked only of batch children, so a standalone lifecycle's history
	// has no marker it does not need.
	l.reportsToBatch = l.batch != "" &&
		workflow.GetVersion(ctx, reportToBatchChange, workflow.DefaultVersion, 1) != workflow.DefaultVersion
	if err := l.registerHandlers(ctx); err != nil {
		return l.status, err
	}
	return l.run(ctx)
}

// lifecycle is the state of one server's workflow; the status query reads it.
type lifecycle struct {
	in     serverapi.ServerLifecycleInput
	status serverapi.ServerStatus
	// batch is the rack batch that started the lifecycle ("" for none);
	// reportsToBatch says the lifecycle tells it each change of state.
	batch          string
	reportsToBatch bool
	// racked is filled by the racked update (or the input) and wakes run.
	racked *serverapi.Location
	// racking is set while a racked update claims its rack units, so a
	// second update cannot claim others at the same time.
	racking bool
	// rackedBy is who reported the server racked, for the asset history.
	rackedBy string
	// runner runs the steps after Rack and holds staff's decisions.
	runner steprunner.Runner[serverapi.RetryInput]
	// aborted is staff's abort, for the compensation's asset history.
	aborted *stepapi.AbortInput
	// generation counts retries; one-off hardware actions (a BIOS reset)
	// may happen once per generation.
	generation int
	inspected  serverapi.InspectServerResult
	// phonedHome is the install attempt the installer reported from.
	phonedHome int
	// deploy is what the current attempt's deploy agent reported, when
	// metalflow deploys an image itself.
	deploy *deploy
	// hostname is what the installed host called itself when it phoned
	// home: the name nova-compute registers under.
	hostname string
	// registered says the Ironic node is available; assigned that
	// AssignTenant finished. Both make the server ready.
	registered, assigned bool
}

// reportToBatchChange: batch children started before lifecycles reported
// their state to their batch (which then polled) replay without reports.
const reportToBatchChange = "report-to-batch"

// batchOf is the rack batch a lifecycle reports to and takes power slots
// from: the one its input names or, for a lifecycle started before batches
// passed their ID, its parent (only batches start lifecycles as children).
func batchOf(ctx workflow.Context, in serverapi.ServerLifecycleInput) string {
	if in.Batch != "" {
		return in.Batch
	}
	if parent := workflow.GetInfo(ctx).ParentWorkflowExecution; parent != nil {
		return parent.ID
	}
	return ""
}

func newLifecycle(in serverapi.ServerLifecycleInput) *lifecycle {
	l := &lifecycle{in: in, racked: in.Location}
	l.status = serverapi.ServerStatus{
		Serial: in.Serial,
		State:  serverapi.StateWaitingRack,
		Step:   serverapi.StepRack,
		Steps:  l.steps().Pending(),
		Tenant: in.Tenant,
		Pools:  in.Pools,
	}
	l.runner = steprunner.Runner[serverapi.RetryInput]{
		Subject: "server", SubjectKV: []any{"serial", in.Serial},
		Record: func(name string) *stepapi.StepStatus { return stepRecord(l.status.Steps, name) },
		Started: func(ctx workflow.Context, name string) error {
			l.status.Step = name
			return l.setStepAttribute(ctx, name)
		},
		Park: func(ctx workflow.Context, a stepapi.Attention) error {
			// Before the state: the batch's report carries the problem.
			l.status.Attention = &a
			return l.setState(ctx, serverapi.StateAttention)
		},
		Resume: func(ctx workflow.Context) error {
			l.status.Attention = nil
			return l.setState(ctx, serverapi.StateProvisioning)
		},
		Retry: l.applyRetry,
	}
	return l
}

// Steps lists the lifecycle's steps in order, as its status shows them.
func Steps() []string { return (*lifecycle)(nil).steps().Names() }

// steps is the lifecycle's table: the status lists it, the runner runs
// it, Steps() names it.
func (l *lifecycle) steps() steprunner.Table {
	return steprunner.Table{
		// rack runs Rack before the others: it waits for a technician,
		// or claims the units given at registration.
		{Name: serverapi.StepRack},
		{Name: serverapi.StepRegisterAsset, Run: l.registerAsset},
		{Name: serverapi.StepInspect, Run: l.inspect},
		{Name: serverapi.StepRegisterMonitoring, Skippable: true, Run: l.registerMonitoring},
		{Name: serverapi.StepConfigureBIOS, Skippable: true, Run: l.configureBIOS},
		{Name: serverapi.StepConfigureRAID, Skippable: true, Run: l.configureRAID},
		{Name: serverapi.StepInstallOS, Run: l.installOS},
		// Staff may skip registration (the server stays installed) and
		// aggregate membership (Nova can be fixed later); a registered
		// node is not ready until it has its tenant.
		{Name: serverapi.StepRegisterCloud, Skippable: true, Run: l.registerCloud},
		{Name: serverapi.StepJoinAggregate, Skippable: true, Run: l.joinAggregate},
		{Name: serverapi.StepAssignTenant, Run: l.assignTenant},
		{Name: serverapi.StepJoinLoadBalancer, Skippable: true, Run: l.joinLoadBalancer},
	}
}

func (l *lifecycle) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, stepapi.QueryStatus, func() (serverapi.ServerStatus, error) {
		return l.status, nil
	}); err != nil {
		return fmt.Errorf("register %s query: %w", stepapi.QueryStatus, err)
	}
	// The decommission needs the BMC (by reference) and the hostname,
	// which the status leaves out; a query adds nothing to history.
	if err := workflow.SetQueryHandler(ctx, serverapi.QueryMachine, func() (serverapi.MachineFacts, error) {
		return serverapi.MachineFacts{BMC: l.in.BMC, Host: l.hostname}, nil
	}); err != nil {
		return fmt.Errorf("register %s query: %w", serverapi.QueryMachine, err)
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, serverapi.UpdateRacked, l.handleRacked,
		workflow.UpdateHandlerOptions{Validator: l.validateRacked}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, stepapi.UpdateRetry, l.handleRetry,
		workflow.UpdateHandlerOptions{Validator: l.validateRetry}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, stepapi.UpdateSkip, l.handleSkip,
		workflow.UpdateHandlerOptions{Validator: l.validateSkip}); err != nil {
		return err
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, stepapi.UpdateAbort, l.handleAbort,
		workflow.UpdateHandlerOptions{Validator: l.validateAbort}); err != nil {
		return err
	}
	// Installers may call back more than once (retries, a replayed
	// request); only the current attempt's first call counts.
	phoneHome := workflow.GetSignalChannel(ctx, serverapi.SignalPhoneHome)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var ph serverapi.PhoneHome
			if !phoneHome.Receive(ctx, &ph) {
				return
			}
			if ph.Attempt == l.status.InstallAttempt && l.status.Step == serverapi.StepInstallOS {
				l.phonedHome = ph.Attempt
				l.hostname = ph.Hostname
				if d := l.status.Deploy; d != nil && d.Attempt == ph.Attempt && d.PhoneHomeAt == nil {
					now := workflow.Now(ctx)
					d.PhoneHomeAt, d.Phase = &now, serverapi.DeployBooted
				}
			} else {
				workflow.GetLogger(ctx).Warn("ignoring phone-home for another install attempt",
					"attempt", ph.Attempt, "current", l.status.InstallAttempt)
			}
		}
	})
	// The deploy agent's reports, forwarded by the boot service.
	deployReports := workflow.GetSignalChannel(ctx, serverapi.SignalDeployReport)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			var r serverapi.DeployReport
			if !deployReports.Receive(ctx, &r) {
				return
			}
			l.takeDeployReport(ctx, r)
		}
	})
	return nil
}

// validateRacked runs before the update enters history: a rejected update
// leaves no trace and changes nothing. It checks what the workflow knows;
// whether the units are free is decided by the CMDB in handleRacked.
func (l *lifecycle) validateRacked(in serverapi.RackedInput) error {
	if l.racked != nil {
		return fmt.Errorf("server %s is already racked at %s/%s U%d", l.status.Serial, l.racked.Site, l.racked.Rack, l.racked.Unit)
	}
	if l.racking {
		return fmt.Errorf("server %s is being racked by another request", l.status.Serial)
	}
	if l.aborted != nil {
		return fmt.Errorf("the lifecycle of %s was aborted", l.status.Serial)
	}
	return serverapi.ValidateLocation(in.Location)
}

// handleRacked claims the rack units in the CMDB. The claim is atomic there,
// so two servers reported into one unit cannot both win.
func (l *lifecycle) handleRacked(ctx workflow.Context, in serverapi.RackedInput) (serverapi.RackedResult, error) {
	// Two updates delivered in one workflow task both pass the validator
	// before either handler runs; the handler decides.
	if err := l.validateRacked(in); err != nil {
		return serverapi.RackedResult{}, err
	}
	l.racking = true
	defer func() { l.racking = false }()
	loc := in.Location
	if err := l.claimRackUnit(ctx, loc, actorOr(in.By, "technician")); err != nil {
		return serverapi.RackedResult{}, refusal(err)
	}
	l.racked = &loc
	l.rackedBy = in.By
	return serverapi.RackedResult{Serial: l.status.Serial, Location: loc}, nil
}

func (l *lifecycle) claimRackUnit(ctx workflow.Context, loc serverapi.Location, actor string) error {
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Rack()), serverapi.RackServerName,
		serverapi.RackServerInput{
			Serial: l.status.Serial, Site: loc.Site, Room: loc.Room, Rack: loc.Rack, Unit: loc.Unit, Face: loc.Face,
			HeightU: 1, Actor: actor,
		}).Get(ctx, nil)
}

func (l *lifecycle) validateRetry(in serverapi.RetryInput) error {
	if !l.runner.Awaiting() {
		return fmt.Errorf("server %s is %s, not waiting for attention: nothing to retry", l.status.Serial, l.status.State)
	}
	return checkRetryBMC(in)
}

func (l *lifecycle) handleRetry(ctx workflow.Context, in serverapi.RetryInput) (stepapi.DecisionResult, error) {
	if err := l.validateRetry(in); err != nil {
		return stepapi.DecisionResult{}, err
	}
	return l.runner.Answer(l.status.Serial, steprunner.Decision[serverapi.RetryInput]{Action: steprunner.Retry, Retry: in})
}

func (l *lifecycle) validateSkip(serverapi.SkipInput) error {
	if !l.runner.Awaiting() {
		return fmt.Errorf("server %s is %s, not waiting for attention: nothing to skip", l.status.Serial, l.status.State)
	}
	if !l.status.Attention.Skippable {
		return fmt.Errorf("step %s cannot be skipped; retry or abort", l.status.Attention.Step)
	}
	return nil
}

func (l *lifecycle) handleSkip(ctx workflow.Context, in serverapi.SkipInput) (stepapi.DecisionResult, error) {
	if err := l.validateSkip(in); err != nil {
		return stepapi.DecisionResult{}, err
	}
	return l.runner.Answer(l.status.Serial, steprunner.Decision[serverapi.RetryInput]{Action: steprunner.Skip, By: in.By})
}

func (l *lifecycle) validateAbort(in stepapi.AbortInput) error {
	if in.Reason == "" {
		return errors.New("an abort needs a reason, for the asset history")
	}
	switch {
	case l.aborted != nil || l.runner.Decided():
		return fmt.Errorf("server %s already has a decision pending", l.status.Serial)
	case l.runner.Awaiting(), l.status.State == serverapi.StateWaitingRack:
		return nil
	}
	return fmt.Errorf("server %s is %s: abort is possible while it waits to be racked or for attention", l.status.Serial, l.status.State)
}

func (l *lifecycle) handleAbort(ctx workflow.Context, in stepapi.AbortInput) (stepapi.DecisionResult, error) {
	if err := l.validateAbort(in); err != nil {
		return stepapi.DecisionResult{}, err
	}
	if l.runner.Awaiting() {
		if _, err := l.runner.Decide(steprunner.Decision[serverapi.RetryInput]{Action: steprunner.Abort, By: in.By}); err != nil {
			return stepapi.DecisionResult{}, err
		}
	}
	l.aborted = &in
	return stepapi.DecisionResult{Serial: l.status.Serial, Action: stepapi.UpdateAbort, Step: l.status.Step}, nil
}

func (l *lifecycle) run(ctx workflow.Context) (serverapi.ServerStatus, error) {
	err := l.runSteps(ctx)
	switch {
	case errors.Is(err, steprunner.ErrAborted):
		err = l.compensate(ctx)
	case err == nil:
		l.status.Step = ""
		l.status.Attention = nil
		// Without a cloud registration (no Ironic configured, or staff
		// skipped it) the server is installed but not schedulable.
		final := serverapi.StateInstalled
		if l.registered && l.assigned {
			final = serverapi.StateReady
		}
		if err = l.setStepAttribute(ctx, final); err == nil {
			err = l.setState(ctx, final)
		}
	}
	if err != nil {
		if temporal.IsCanceledError(err) {
			l.compensateCancel(ctx)
			return l.status, err
		}
		// Best effort: the run is failing anyway.
		_ = l.setState(ctx, serverapi.StateFailed)
		return l.status, err
	}
	// Let in-flight updates deliver their answers before the run ends.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return l.status, err
	}
	return l.status, nil
}

func (l *lifecycle) runSteps(ctx workflow.Context) error {
	if err := l.rack(ctx); err != nil {
		return err
	}
	if err := l.setState(ctx, serverapi.StateProvisioning); err != nil {
		return err
	}
	steps := l.steps().Without(serverapi.StepRack)
	// Runs started before the cloud steps existed end after the install,
	// as they did then: replaying their histories must not find new
	// activities in them.
	if workflow.GetVersion(ctx, cloudStepsChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		cloud := []string{serverapi.StepRegisterCloud, serverapi.StepJoinAggregate, serverapi.StepAssignTenant}
		for _, name := range cloud {
			l.runner.MarkSkipped(name, "this lifecycle started before metalflow had cloud steps")
		}
		steps = steps.Without(cloud...)
	}
	// Runs started before load balancing was part of the lifecycle end
	// without it, as they did then.
	if workflow.GetVersion(ctx, joinLoadBalancerChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		l.runner.MarkSkipped(serverapi.StepJoinLoadBalancer, "this lifecycle started before metalflow joined servers to load balancers")
		steps = steps.Without(serverapi.StepJoinLoadBalancer)
	}
	return l.runner.Run(ctx, steps)
}

// applyRetry takes a retry's corrections. Another profile changes what
// BIOS, RAID and install must be: the run goes back to inspection.
func (l *lifecycle) applyRetry(step string, r serverapi.RetryInput) error {
	l.generation++
	l.in.BMC = mergeBMC(l.in.BMC, r.BMC)
	if r.Profile == "" {
		return nil
	}
	l.in.Profile = r.Profile
	if step == serverapi.StepInspect {
		return nil
	}
	return steprunner.GoBack(serverapi.StepInspect)
}

// compensate undoes the lifecycle's claims after an abort.
func (l *lifecycle) compensate(ctx workflow.Context) error {
	reason, by := "", ""
	if l.aborted != nil {
		reason, by = l.aborted.Reason, l.aborted.By
	}
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), serverapi.AbortServerName,
		serverapi.AbortServerInput{Serial: l.status.Serial, Reason: reason, Actor: actorOr(by, "operator")}).Get(ctx, nil)
	if err != nil {
		return err
	}
	l.status.Step = ""
	if err := l.setStepAttribute(ctx, serverapi.StateAborted); err != nil {
		return err
	}
	return l.setState(ctx, serverapi.StateAborted)
}

// cancelCompensationChange: runs cancelled before cancellation had a
// compensation ended without one; replaying them must not find it.
const cancelCompensationChange = "cancel-compensation"

// compensateCancel runs after the lifecycle was cancelled (a decommission
// of a server still being provisioned): any pending netboot is withdrawn
// so the server cannot install once it is being wiped, and the asset
// records where provisioning stopped. The rack unit stays claimed: the
// server is still in it until a technician reports it unracked. It runs
// in a disconnected context because the workflow's own is cancelled; a
// failure is logged, not returned, since the run ends cancelled anyway
// and the decommission's steps are each idempotent.
func (l *lifecycle) compensateCancel(ctx workflow.Context) {
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	if workflow.GetVersion(dctx, cancelCompensationChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return
	}
	// The decommission that cancelled it said where to report how far it
	// had got; one that said nothing (started before decommissions asked)
	// looks for itself.
	var dec serverapi.Decommissioning
	if workflow.GetSignalChannel(ctx, serverapi.SignalDecommissioning).ReceiveAsync(&dec) && dec.WorkflowID != "" {
		defer func() {
			_ = workflow.SignalExternalWorkflow(dctx, dec.WorkflowID, "", serverapi.SignalLifecycleEnded,
				serverapi.LifecycleEndOf(l.status)).Get(dctx, nil)
		}()
	}
	step := l.status.Step
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, options.Inventory()), serverapi.CancelServerName,
		serverapi.CancelServerInput{Serial: l.status.Serial, Step: step}).Get(dctx, nil)
	if err != nil {
		workflow.GetLogger(ctx).Error("cancellation compensation failed", "serial", l.status.Serial, "error", err)
	}
	for i := range l.status.Steps {
		if s := &l.status.Steps[i]; s.Status == stepapi.StepRunning || s.Status == stepapi.StepWaiting {
			now := workflow.Now(ctx)
			s.Status, s.FinishedAt, s.Error = stepapi.StepFailed, &now, "cancelled: the server is being decommissioned"
		}
	}
	l.status.Attention = nil
	l.status.Step = ""
	if err := l.setStepAttribute(dctx, serverapi.StateCancelled); err == nil {
		_ = l.setState(dctx, serverapi.StateCancelled)
	}
}

func (l *lifecycle) rack(ctx workflow.Context) error {
	step := stepRecord(l.status.Steps, serverapi.StepRack)
	now := workflow.Now(ctx)
	step.Status, step.StartedAt = stepapi.StepRunning, &now
	// The start's search attributes hold the Rack step and its time
	// already; the status has it from here.
	l.status.StepStartedAt = &now
	if l.racked == nil {
		step.Status = stepapi.StepWaiting
		for {
			ok, err := workflow.AwaitWithTimeout(ctx, rackReminderInterval, func() bool { return l.racked != nil || l.aborted != nil })
			if err != nil {
				return err
			}
			if l.aborted != nil && l.racked == nil {
				step.Status = stepapi.StepSkipped
				return steprunner.ErrAborted
			}
			if ok {
				break
			}
			l.remindRack(ctx)
		}
	} else if err := l.claimRackUnit(ctx, *l.racked, actorOr(l.in.Actor, "registration")); err != nil {
		if err := l.awaitRackFix(ctx, err); err != nil {
			return err
		}
	}
	l.status.Location = l.racked
	if err := workflow.UpsertTypedSearchAttributes(ctx, serverattrs.Rack().ValueSet(l.racked.Rack)); err != nil {
		return err
	}
	now = workflow.Now(ctx)
	step.Status, step.FinishedAt = stepapi.StepDone, &now
	return nil
}

// rackAttentionChange: lifecycles started before it ended failed when the
// location given at registration was refused. Asked only after a refusal,
// so a claim that succeeds leaves no marker.
const rackAttentionChange = "rack-claim-attention"

// awaitRackFix parks a refused registration-time rack claim in attention.
// The API checked the location, so a refusal means the CMDB changed since
// (the units were taken) or the worker reads another inventory than the
// API (no such site): neither is a reason to end the lifecycle, and both
// need a human. A retry claims again; an abort ends the lifecycle.
func (l *lifecycle) awaitRackFix(ctx workflow.Context, refused error) error {
	if workflow.GetVersion(ctx, rackAttentionChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return refused
	}
	return l.runner.RunStep(ctx, steprunner.Step{Name: serverapi.StepRack, Run: func(ctx workflow.Context) error {
		if err := refused; err != nil {
			refused = nil
			return err
		}
		return l.claimRackUnit(ctx, *l.racked, actorOr(l.in.Actor, "registration"))
	}})
}

// remindRack is the nudge for a server nobody has racked in a day.
func (l *lifecycle) remindRack(ctx workflow.Context) {
	l.status.RackReminders++
	workflow.GetLogger(ctx).Warn("server still waiting to be racked",
		"serial", l.status.Serial, "reminders", l.status.RackReminders)
	workflow.GetMetricsHandler(ctx).Counter("metalflow_rack_reminders_total").Inc(1)
}

func (l *lifecycle) bmc() (serverapi.BMCRef, error) {
	if l.in.BMC == nil || l.in.BMC.Address == "" || l.in.BMC.CredentialRef == "" {
		return serverapi.BMCRef{}, errors.New("no BMC address and credential registered for this server: retry with one")
	}
	return *l.in.BMC, nil
}

func (l *lifecycle) registerAsset(ctx workflow.Context) error {
	addr := ""
	if l.in.BMC != nil {
		addr = l.in.BMC.Address
	}
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), serverapi.RegisterAssetName,
		serverapi.RegisterAssetInput{Serial: l.status.Serial, BMCAddress: addr, Actor: actorOr(l.in.Actor, "lifecycle")}).Get(ctx, nil)
}

func (l *lifecycle) inspect(ctx workflow.Context) error {
	bmc, err := l.bmc()
	if err != nil {
		return err
	}
	var res serverapi.InspectServerResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.BMC(5*time.Minute)), serverapi.InspectServerName,
		serverapi.InspectServerInput{Serial: l.status.Serial, BMC: bmc, Profile: l.in.Profile, Actor: "inspection"}).Get(ctx, &res); err != nil {
		return err
	}
	l.inspected = res
	l.status.Hardware = &serverapi.Hardware{Vendor: res.Vendor, Model: res.Model, Profile: res.Profile, Role: res.Role, MACs: res.MACs, Warnings: res.Warnings}
	return nil
}

func (l *lifecycle) registerMonitoring(ctx workflow.Context) error {
	in := serverapi.RegisterMonitoringInput{Serial: l.status.Serial, Role: l.inspected.Role}
	if l.in.BMC != nil {
		in.BMCAddress = l.in.BMC.Address
	}
	if l.racked != nil {
		in.Site, in.Rack = l.racked.Site, l.racked.Rack
	}
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), serverapi.RegisterMonitoringName, in).Get(ctx, nil)
}

func (l *lifecycle) configureBIOS(ctx workflow.Context) error {
	bmc, err := l.bmc()
	if err != nil {
		return err
	}
	return rackbatch.WithPowerSlot(ctx, l.batch, l.status.Serial, func() error {
		var res serverapi.ConfigureBIOSResult
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.BMC(15*time.Minute)), serverapi.ConfigureBIOSName,
			serverapi.ConfigureBIOSInput{
				Serial: l.status.Serial, BMC: bmc, Profile: l.inspected.Profile, Vendor: l.inspected.Vendor,
				Generation: l.generation, ApplyTimeout: 10 * time.Minute,
			}).Get(ctx, &res)
		// The last read-back stays in the status, from a success or from
		// the failure staff are asked about.
		r := res.Report
		if err != nil {
			r = BIOSReportOf(err)
		}
		if r != nil {
			l.status.BIOS = r
		}
		return err
	})
}

func (l *lifecycle) configureRAID(ctx workflow.Context) error {
	bmc, err := l.bmc()
	if err != nil {
		return err
	}
	var res serverapi.ConfigureRAIDResult
	err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.BMC(15*time.Minute)), serverapi.ConfigureRAIDName,
		serverapi.ConfigureRAIDInput{Serial: l.status.Serial, BMC: bmc, Profile: l.inspected.Profile, Vendor: l.inspected.Vendor}).Get(ctx, &res)
	r := res.Report
	if err != nil {
		r = RAIDReportOf(err)
	}
	if r != nil {
		l.status.RAID = r
	}
	return err
}

// installOS netboots the installer and waits for it to phone home, trying
// a bounded number of times before asking a human.
func (l *lifecycle) installOS(ctx workflow.Context) error {
	bmc, err := l.bmc()
	if err != nil {
		return err
	}
	timeout := l.inspected.InstallTimeout
	if timeout <= 0 {
		timeout = 45 * time.Minute
	}
	attempts := l.inspected.InstallAttempts
	if attempts <= 0 {
		attempts = 3
	}
	image := l.image()
	deploys := image != "" && workflow.GetVersion(ctx, deployChange, workflow.DefaultVersion, 1) != workflow.DefaultVersion
	for i := 0; i < attempts; i++ {
		l.status.InstallAttempt++
		attempt := l.status.InstallAttempt
		start := serverapi.StartInstallInput{
			Serial: l.status.Serial, BMC: bmc, Attempt: attempt, MACs: l.inspected.MACs,
			// The boot service offers the attempt a little longer than
			// the workflow waits, so a slow installer is not cut off
			// between the two.
			TTL: timeout + 5*time.Minute,
		}
		if deploys {
			start.Deploy = l.deployPlan(image)
			l.deploy = &deploy{attempt: attempt}
			l.status.Deploy = &serverapi.DeployStatus{Attempt: attempt, Image: image, Phase: serverapi.DeployPowerOn}
		}
		if err := rackbatch.WithPowerSlot(ctx, l.batch, l.status.Serial, func() error {
			return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.BMC(5*time.Minute)), serverapi.StartInstallName,
				start).Get(ctx, nil)
		}); err != nil {
			return err
		}
		deadline := workflow.Now(ctx).Add(timeout)
		if deploys {
			now := workflow.Now(ctx)
			l.status.Deploy.PowerOnAt = &now
			booted, err := l.awaitDeploy(ctx, bmc, attempt, deadline)
			if err != nil {
				return err
			}
			if !booted {
				workflow.GetLogger(ctx).Warn("deploy agent did not finish in time", "serial", l.status.Serial, "attempt", attempt, "timeout", timeout)
				continue
			}
		}
		ok, err := l.awaitUntil(ctx, deadline, func() bool { return l.phonedHome == attempt })
		if err != nil {
			return err
		}
		if ok {
			return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.BMC(5*time.Minute)), serverapi.FinishInstallName,
				serverapi.FinishInstallInput{Serial: l.status.Serial, BMC: bmc, Actor: "lifecycle"}).Get(ctx, nil)
		}
		workflow.GetLogger(ctx).Warn("installer did not phone home", "serial", l.status.Serial, "attempt", attempt, "timeout", timeout)
	}
	return temporal.NewNonRetryableApplicationError(
		fmt.Sprintf("the installer did not phone home in %d attempt(s) of %s each", attempts, timeout), "InstallTimeout", nil)
}

// cloudStepsChange versions the addition of the cloud steps after the
// install (see runSteps).
const cloudStepsChange = "cloud-steps"

// noteRegistrationSkipped is why the later cloud steps do nothing once
// RegisterCloud did not register the node.
const noteRegistrationSkipped = "RegisterCloud did not run: the server has no Ironic node"

// registerCloud enrolls the installed server in Ironic and waits for the
// node to be available. The worker decides whether an Ironic is
// configured; without one the step is skipped with its note.
func (l *lifecycle) registerCloud(ctx workflow.Context) error {
	bmc, err := l.bmc()
	if err != nil {
		return err
	}
	in := serverapi.RegisterCloudInput{
		Serial: l.status.Serial, BMC: bmc,
		CPUs: l.inspected.CPUs, MemoryMiB: l.inspected.MemoryMiB, LocalGB: l.inspected.LocalGB, CPUArch: l.inspected.CPUArch,
		ResourceClass: l.inspected.ResourceClass, MACs: l.inspected.MACs, Actor: "lifecycle",
	}
	if l.racked != nil {
		in.Site, in.Room, in.Rack = l.racked.Site, l.racked.Room, l.racked.Rack
	}
	var res serverapi.CloudStepResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Cloud()), serverapi.RegisterCloudName, in).Get(ctx, &res); err != nil {
		return err
	}
	if res.Skipped {
		return steprunner.Skipped(res.Note)
	}
	l.registered = true
	l.status.Cloud = &serverapi.CloudNode{NodeUUID: res.NodeUUID, ProvisionState: res.ProvisionState, PowerState: res.PowerState}
	return nil
}

// joinAggregate puts hypervisors into their rack's Nova aggregate; other
// roles have no nova-compute to add.
func (l *lifecycle) joinAggregate(ctx workflow.Context) error {
	if !l.registered {
		return steprunner.Skipped(noteRegistrationSkipped)
	}
	if l.inspected.Role != profiles.RoleHypervisor {
		return steprunner.Skipped(fmt.Sprintf("role %q: only hypervisors join a Nova aggregate", l.inspected.Role))
	}
	in := serverapi.JoinAggregateInput{Serial: l.status.Serial, Host: l.hostname, Actor: "lifecycle"}
	if in.Host == "" {
		in.Host = l.status.Serial
	}
	if l.racked != nil {
		in.Site, in.Room, in.Rack = l.racked.Site, l.racked.Room, l.racked.Rack
	}
	var res serverapi.CloudStepResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Cloud()), serverapi.JoinAggregateName, in).Get(ctx, &res); err != nil {
		return err
	}
	if res.Skipped {
		return steprunner.Skipped(res.Note)
	}
	l.runner.Note(res.Note)
	return nil
}

// joinLoadBalancerChange guards the JoinLoadBalancer step.
const joinLoadBalancerChange = "join-load-balancer"

// joinLoadBalancer adds the server to each of its pools' VIPs, one update
// per VIP, each idempotent (adding a backend that is there replaces it
// with itself). Staff may skip it: the server is provisioned either way.
func (l *lifecycle) joinLoadBalancer(ctx workflow.Context) error {
	if len(l.in.Pools) == 0 {
		return steprunner.Skipped("no load-balancer pools were requested for this server")
	}
	for _, vip := range l.in.Pools {
		err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.LoadBalancer()), serverapi.JoinLoadBalancerName,
			serverapi.LoadBalancerMembershipInput{Serial: l.status.Serial, VIP: vip, Actor: "lifecycle"}).Get(ctx, nil)
		if err != nil {
			return err
		}
	}
	l.runner.Note("backend of " + strings.Join(l.in.Pools, ", "))
	return nil
}

// assignTenant hands the node to the project that ordered the server.
func (l *lifecycle) assignTenant(ctx workflow.Context) error {
	if !l.registered {
		return steprunner.Skipped(noteRegistrationSkipped)
	}
	var res serverapi.CloudStepResult
	if err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Cloud()), serverapi.AssignTenantName,
		serverapi.AssignTenantInput{Serial: l.status.Serial, Tenant: l.in.Tenant, Actor: "lifecycle"}).Get(ctx, &res); err != nil {
		return err
	}
	if res.Skipped && res.Note != serverapi.NoteNoTenant {
		return steprunner.Skipped(res.Note)
	}
	// No tenant is a complete answer: the node is available to the
	// cloud's shared pool, so the server is ready.
	l.assigned = true
	if res.ProvisionState != "" && l.status.Cloud != nil {
		l.status.Cloud.ProvisionState, l.status.Cloud.PowerState = res.ProvisionState, res.PowerState
	}
	if res.Skipped {
		return steprunner.Skipped(res.Note)
	}
	return nil
}

// setStepAttribute records the step (or final state) and when it began in
// one upsert: one command, as recorded histories have it.
func (l *lifecycle) setStepAttribute(ctx workflow.Context, value string) error {
	now := workflow.Now(ctx)
	l.status.StepStartedAt = &now
	if err := workflow.UpsertTypedSearchAttributes(ctx, serverattrs.LifecycleStep().ValueSet(value), serverattrs.LifecycleStepStartedAt().ValueSet(now)); err != nil {
		return err
	}
	l.report(ctx)
	return nil
}

// setState changes the state and keeps the LifecycleState search attribute
// (what the API lists servers by) in step.
func (l *lifecycle) setState(ctx workflow.Context, state string) error {
	if l.status.State == state {
		return nil
	}
	l.status.State = state
	if err := workflow.UpsertTypedSearchAttributes(ctx, serverattrs.LifecycleState().ValueSet(state)); err != nil {
		return err
	}
	l.report(ctx)
	return nil
}

// report tells the batch that started the lifecycle where it is now.
func (l *lifecycle) report(ctx workflow.Context) {
	if !l.reportsToBatch {
		return
	}
	r := batchapi.ServerStateReport{Serial: l.status.Serial, State: l.status.State, Step: l.status.Step}
	if a := l.status.Attention; a != nil {
		r.Step, r.Error = a.Step, a.Error
	}
	rackbatch.ReportState(ctx, l.batch, r)
}

// refusal unwraps an activity's verdict so the update's caller sees the
// CMDB's message and type, not Temporal's wrapping.
func refusal(err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return temporal.NewNonRetryableApplicationError(appErr.Message(), appErr.Type(), nil)
	}
	return temporal.NewNonRetryableApplicationError("could not record the location: "+err.Error(), "RackFailed", nil)
}

func actorOr(actor, fallback string) string {
	if actor == "" {
		return fallback
	}
	return actor
}

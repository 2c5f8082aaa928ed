package rackbatch

import (
	"fmt"
	"time"

	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/steprunner"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The poll of batches started before lifecycles reported their state: one
// short read, tried a few times before it is skipped until the next one.
const (
	serverStatesStartToClose  = 30 * time.Second
	serverStatesMaximumTrials = 3
)

// childrenReportChange: batches started before their lifecycles reported
// their state (SignalServerState) poll ServerStates, and replay so.
const childrenReportChange = "children-report-state"

// RackBatch provisions a rack's worth of servers at once: one child
// ServerLifecycle per server, at most Concurrency of them busy at a time,
// at most PowerConcurrency of them changing power at a time. One server's
// trouble is that server's: the batch counts it and goes on.
//
// When is a batch done? When every server has settled: installed, aborted,
// failed, already registered before the batch, or parked in attention for
// longer than AttentionGrace. A server stuck in attention is reported, not
// waited for forever; its lifecycle keeps running (the batch abandons rather
// than terminates its children) so staff can still retry or abort it.

// RackBatch is the registered entry point.
func RackBatch(ctx workflow.Context, in batchapi.RackBatchInput) (batchapi.RackBatchStatus, error) {
	if err := batchapi.ValidateRackBatch(in); err != nil {
		return batchapi.RackBatchStatus{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidInput", nil)
	}
	b := newRackBatch(in)
	if err := workflow.SetQueryHandler(ctx, stepapi.QueryStatus, func() (batchapi.RackBatchStatus, error) {
		return b.status(), nil
	}); err != nil {
		return batchapi.RackBatchStatus{}, fmt.Errorf("register %s query: %w", stepapi.QueryStatus, err)
	}
	if workflow.GetVersion(ctx, childrenReportChange, workflow.DefaultVersion, 1) != workflow.DefaultVersion {
		b.reports = workflow.GetSignalChannel(ctx, batchapi.SignalServerState)
	}
	b.slots = ServeRackPowerSlots(ctx, b.in.PowerConcurrency)
	b.run(ctx)
	return b.status(), nil
}

type rackBatch struct {
	in      batchapi.RackBatchInput
	servers []batchServer
	slots   *RackPowerSlots
	done    bool
	// reports is where the lifecycles' state reports arrive; nil for a
	// batch that polls.
	reports workflow.ReceiveChannel
}

// batchServer is one server's progress inside the batch.
type batchServer struct {
	spec    batchapi.RackBatchServer
	state   batchapi.BatchServerState
	started bool
	// closed: the child run has ended (or never started).
	closed bool
	// attentionSince is when the batch first saw the server in attention.
	attentionSince *time.Time
	result         workflow.ChildWorkflowFuture
}

func newRackBatch(in batchapi.RackBatchInput) *rackBatch {
	if in.Concurrency == 0 {
		in.Concurrency = batchapi.DefaultBatchConcurrency
	}
	if in.PowerConcurrency == 0 {
		in.PowerConcurrency = batchapi.DefaultPowerConcurrency
	}
	if in.AttentionGrace == 0 {
		in.AttentionGrace = batchapi.DefaultAttentionGrace
	}
	if in.PollInterval == 0 {
		// A short grace needs polls often enough to notice it has passed.
		in.PollInterval = min(batchapi.DefaultBatchPollInterval, max(in.AttentionGrace/4, time.Second))
	}
	b := &rackBatch{in: in}
	for _, s := range in.Servers {
		b.servers = append(b.servers, batchServer{spec: s, state: batchapi.BatchServerState{Serial: s.Serial, State: batchapi.BatchServerPending}})
	}
	return b
}

func (b *rackBatch) status() batchapi.RackBatchStatus {
	st := batchapi.RackBatchStatus{
		BatchID: b.in.BatchID, Site: b.in.Site, Rack: b.in.Rack, State: batchapi.BatchRunning,
		Total: len(b.servers), PerServer: make([]batchapi.BatchServerState, 0, len(b.servers)),
	}
	if b.done {
		st.State = batchapi.BatchFinished
	}
	if b.slots != nil {
		st.PowerSlots = b.slots.Status()
	}
	for _, s := range b.servers {
		st.PerServer = append(st.PerServer, s.state)
		switch s.state.State {
		case serverapi.StateInstalled:
			st.Installed++
		case serverapi.StateFailed:
			st.Failed++
		case serverapi.StateAborted:
			st.Aborted++
		case batchapi.BatchServerAlreadyExisting:
			st.AlreadyExisting++
		case serverapi.StateAttention:
			st.Attention++
		case batchapi.BatchServerPending:
			st.Pending++
		default:
			st.Running++
		}
	}
	return st
}

// busy counts servers started and not yet settled: what Concurrency caps.
func (b *rackBatch) busy() int {
	n := 0
	for _, s := range b.servers {
		if s.started && !s.state.Settled {
			n++
		}
	}
	return n
}

func (b *rackBatch) allSettled() bool {
	for _, s := range b.servers {
		if !s.state.Settled {
			return false
		}
	}
	return true
}

func (b *rackBatch) run(ctx workflow.Context) {
	log := workflow.GetLogger(ctx)
	for !b.allSettled() {
		b.startMore(ctx)
		sel := workflow.NewSelector(ctx)
		waiting := 0
		for i := range b.servers {
			s := &b.servers[i]
			if !s.started || s.closed {
				continue
			}
			waiting++
			sel.AddFuture(s.result, func(f workflow.Future) { b.childClosed(ctx, s, f) })
		}
		if waiting == 0 {
			// Nothing open and nothing startable would be a bug in
			// busy/startMore; fail loudly rather than spin.
			log.Error("rack batch has unsettled servers but nothing running")
			break
		}
		if b.reports != nil {
			b.awaitReports(ctx, sel)
			continue
		}
		polled := false
		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		sel.AddFuture(workflow.NewTimer(timerCtx, b.in.PollInterval), func(workflow.Future) { polled = true })
		sel.Select(ctx)
		cancelTimer()
		if polled {
			b.poll(ctx)
		}
	}
	// Every lifecycle still open is parked in attention: it holds no power
	// slot, and one that asks for a slot after the batch ends goes on
	// without one (AcquirePowerSlot).
	b.done = true
}

// startMore starts pending servers while fewer than Concurrency are busy.
func (b *rackBatch) startMore(ctx workflow.Context) {
	for i := range b.servers {
		if b.busy() >= b.in.Concurrency {
			return
		}
		s := &b.servers[i]
		if s.started {
			continue
		}
		s.started = true
		s.state.State = serverapi.StateProvisioning
		actor := b.in.Actor
		if actor == "" {
			actor = "rack-batch"
		}
		loc := s.spec.Location
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: serverapi.LifecycleWorkflowID(s.spec.Serial),
			TaskQueue:  serverapi.TaskQueue,
			// One lifecycle per serial, ever, as POST /servers has it: a
			// serial with an earlier run is reported, not started again.
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
			// A server stuck in attention outlives the batch that reports
			// it; staff still retry or abort it.
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
			TypedSearchAttributes: serverattrs.AtStart(s.spec.Serial, workflow.Now(ctx)),
		})
		s.result = workflow.ExecuteChildWorkflow(cctx, serverapi.ServerLifecycleName, serverapi.ServerLifecycleInput{
			Serial: s.spec.Serial, BMC: s.spec.BMC, Profile: s.spec.Profile, Actor: actor, Location: &loc,
			Batch: workflow.GetInfo(ctx).WorkflowExecution.ID,
		})
	}
}

// childClosed records how a server's lifecycle ended.
func (b *rackBatch) childClosed(ctx workflow.Context, s *batchServer, f workflow.Future) {
	s.closed = true
	s.state.Settled = true
	s.state.Step = ""
	var res serverapi.ServerStatus
	err := f.Get(ctx, &res)
	if b.slots != nil {
		b.slots.ReleaseAll(ctx, s.spec.Serial)
	}
	switch {
	case err == nil:
		s.state.State = res.State
		s.state.Error = ""
	case temporal.IsWorkflowExecutionAlreadyStartedError(err):
		s.state.State = batchapi.BatchServerAlreadyExisting
		s.state.Error = fmt.Sprintf("server %s already has a lifecycle (workflow %s); the batch left it alone", s.spec.Serial, serverapi.LifecycleWorkflowID(s.spec.Serial))
	default:
		s.state.State = serverapi.StateFailed
		s.state.Error = steprunner.Cause(err)
	}
	workflow.GetLogger(ctx).Info("rack batch server settled", "serial", s.spec.Serial, "state", s.state.State)
}

// poll reads the states of the servers still running, and settles those
// parked in attention for longer than the grace.
func (b *rackBatch) poll(ctx workflow.Context) {
	var serials []string
	for _, s := range b.servers {
		if s.started && !s.closed {
			serials = append(serials, s.spec.Serial)
		}
	}
	if len(serials) == 0 {
		return
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// A status read is a handful of queries; a slow or failed read is
		// simply tried at the next poll, so retry little here.
		StartToCloseTimeout: serverStatesStartToClose,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: serverStatesMaximumTrials},
	})
	var res batchapi.ServerStatesResult
	if err := workflow.ExecuteActivity(actx, batchapi.ServerStatesName, batchapi.ServerStatesInput{Serials: serials}).Get(ctx, &res); err != nil {
		workflow.GetLogger(ctx).Warn("could not read the batch's server states; trying at the next poll", "error", err)
		return
	}
	now := workflow.Now(ctx)
	for _, r := range res.Servers {
		b.take(now, r)
	}
}

// awaitReports waits for a child to end, a state report, or the end of an
// attention's grace, whichever comes first.
func (b *rackBatch) awaitReports(ctx workflow.Context, sel workflow.Selector) {
	sel.AddReceive(b.reports, func(c workflow.ReceiveChannel, _ bool) {
		var r batchapi.ServerStateReport
		c.Receive(ctx, &r)
		b.take(workflow.Now(ctx), r)
	})
	timerCtx, cancelTimer := workflow.WithCancel(ctx)
	defer cancelTimer()
	if wait, ok := b.untilGraceEnds(workflow.Now(ctx)); ok {
		sel.AddFuture(workflow.NewTimer(timerCtx, wait), func(workflow.Future) {})
	}
	sel.Select(ctx)
	now := workflow.Now(ctx)
	for i := range b.servers {
		if s := &b.servers[i]; s.attentionSince != nil && !s.closed {
			s.state.Settled = now.Sub(*s.attentionSince) >= b.in.AttentionGrace
		}
	}
}

// untilGraceEnds is how long until the first server in attention has
// waited out the grace; false when none is waiting for it.
func (b *rackBatch) untilGraceEnds(now time.Time) (time.Duration, bool) {
	var first time.Duration
	found := false
	for _, s := range b.servers {
		if s.attentionSince == nil || s.closed || s.state.Settled {
			continue
		}
		if d := s.attentionSince.Add(b.in.AttentionGrace).Sub(now); !found || d < first {
			first, found = d, true
		}
	}
	return max(first, 0), found
}

// take applies what a lifecycle reported (or a poll read): a server in
// attention longer than the grace is settled; one back at work after a
// retry is waited for again.
func (b *rackBatch) take(now time.Time, r batchapi.ServerStateReport) {
	for i := range b.servers {
		s := &b.servers[i]
		if s.spec.Serial != r.Serial || !s.started || s.closed {
			continue
		}
		s.state.State, s.state.Step, s.state.Error = r.State, r.Step, r.Error
		if r.State != serverapi.StateAttention {
			s.attentionSince = nil
			s.state.Settled = false
			continue
		}
		if s.attentionSince == nil {
			t := now
			s.attentionSince = &t
		}
		s.state.Settled = now.Sub(*s.attentionSince) >= b.in.AttentionGrace
	}
}

package workflows

import (
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The batch's poll of its servers' states: one short read, tried a few
// times before the poll is skipped until the next interval.
const (
	serverStatesStartToClose  = 30 * time.Second
	serverStatesMaximumTrials = 3
)

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
func RackBatch(ctx workflow.Context, in RackBatchInput) (RackBatchStatus, error) {
	if err := ValidateRackBatch(in); err != nil {
		return RackBatchStatus{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidInput", nil)
	}
	b := newRackBatch(in)
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (RackBatchStatus, error) {
		return b.status(), nil
	}); err != nil {
		return RackBatchStatus{}, fmt.Errorf("register %s query: %w", QueryStatus, err)
	}
	b.slots = ServeRackPowerSlots(ctx, b.in.PowerConcurrency)
	b.run(ctx)
	return b.status(), nil
}

type rackBatch struct {
	in      RackBatchInput
	servers []batchServer
	slots   *RackPowerSlots
	done    bool
}

// batchServer is one server's progress inside the batch.
type batchServer struct {
	spec    RackBatchServer
	state   BatchServerState
	started bool
	// closed: the child run has ended (or never started).
	closed bool
	// attentionSince is when the batch first saw the server in attention.
	attentionSince *time.Time
	result         workflow.ChildWorkflowFuture
}

func newRackBatch(in RackBatchInput) *rackBatch {
	if in.Concurrency == 0 {
		in.Concurrency = DefaultBatchConcurrency
	}
	if in.PowerConcurrency == 0 {
		in.PowerConcurrency = DefaultPowerConcurrency
	}
	if in.AttentionGrace == 0 {
		in.AttentionGrace = DefaultAttentionGrace
	}
	if in.PollInterval == 0 {
		// A short grace needs polls often enough to notice it has passed.
		in.PollInterval = min(DefaultBatchPollInterval, max(in.AttentionGrace/4, time.Second))
	}
	b := &rackBatch{in: in}
	for _, s := range in.Servers {
		b.servers = append(b.servers, batchServer{spec: s, state: BatchServerState{Serial: s.Serial, State: BatchServerPending}})
	}
	return b
}

func (b *rackBatch) status() RackBatchStatus {
	st := RackBatchStatus{
		BatchID: b.in.BatchID, Site: b.in.Site, Rack: b.in.Rack, State: BatchRunning,
		Total: len(b.servers), PerServer: make([]BatchServerState, 0, len(b.servers)),
	}
	if b.done {
		st.State = BatchFinished
	}
	if b.slots != nil {
		st.PowerSlots = b.slots.Status()
	}
	for _, s := range b.servers {
		st.PerServer = append(st.PerServer, s.state)
		switch s.state.State {
		case StateInstalled:
			st.Installed++
		case StateFailed:
			st.Failed++
		case StateAborted:
			st.Aborted++
		case BatchServerAlreadyExisting:
			st.AlreadyExisting++
		case StateAttention:
			st.Attention++
		case BatchServerPending:
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
		s.state.State = StateProvisioning
		actor := b.in.Actor
		if actor == "" {
			actor = "rack-batch"
		}
		loc := s.spec.Location
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
			WorkflowID: LifecycleWorkflowID(s.spec.Serial),
			TaskQueue:  TaskQueue,
			// One lifecycle per serial, ever, as POST /servers has it: a
			// serial with an earlier run is reported, not started again.
			WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
			// A server stuck in attention outlives the batch that reports
			// it; staff still retry or abort it.
			ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
			TypedSearchAttributes: LifecycleStartAttributes(s.spec.Serial, workflow.Now(ctx)),
		})
		s.result = workflow.ExecuteChildWorkflow(cctx, ServerLifecycleName, ServerLifecycleInput{
			Serial: s.spec.Serial, BMC: s.spec.BMC, Profile: s.spec.Profile, Actor: actor, Location: &loc,
		})
	}
}

// childClosed records how a server's lifecycle ended.
func (b *rackBatch) childClosed(ctx workflow.Context, s *batchServer, f workflow.Future) {
	s.closed = true
	s.state.Settled = true
	s.state.Step = ""
	var res ServerStatus
	err := f.Get(ctx, &res)
	if b.slots != nil {
		b.slots.ReleaseAll(ctx, s.spec.Serial)
	}
	switch {
	case err == nil:
		s.state.State = res.State
		s.state.Error = ""
	case temporal.IsWorkflowExecutionAlreadyStartedError(err):
		s.state.State = BatchServerAlreadyExisting
		s.state.Error = fmt.Sprintf("server %s already has a lifecycle (workflow %s); the batch left it alone", s.spec.Serial, LifecycleWorkflowID(s.spec.Serial))
	default:
		s.state.State = StateFailed
		s.state.Error = cause(err)
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
	var res ServerStatesResult
	if err := workflow.ExecuteActivity(actx, ServerStatesName, ServerStatesInput{Serials: serials}).Get(ctx, &res); err != nil {
		workflow.GetLogger(ctx).Warn("could not read the batch's server states; trying at the next poll", "error", err)
		return
	}
	now := workflow.Now(ctx)
	for _, r := range res.Servers {
		for i := range b.servers {
			s := &b.servers[i]
			if s.spec.Serial != r.Serial || !s.started || s.closed {
				continue
			}
			s.state.State, s.state.Step, s.state.Error = r.State, r.Step, r.Error
			if r.State != StateAttention {
				// Back at work after a retry: the batch waits for it again.
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
}

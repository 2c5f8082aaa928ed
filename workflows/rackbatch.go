package workflows

import (
	"errors"
	"fmt"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/activities"
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

// Names of the batch workflow and its poll activity; part of recorded
// histories, never rename them.
const (
	RackBatchName = "RackBatch"
	// ServerStatesName reads the status of lifecycles by serial; the batch
	// polls it to see which of its servers wait for a human.
	ServerStatesName = "ServerStates"
)

// Batch states.
const (
	BatchRunning  = "running"
	BatchFinished = "finished"
)

// Per-server states the batch adds to the lifecycle's own.
const (
	// BatchServerPending: not started yet, waiting for a concurrency slot.
	BatchServerPending = "pending"
	// BatchServerAlreadyExisting: the serial had a lifecycle before the
	// batch; the batch did not start, and does not retry, it.
	BatchServerAlreadyExisting = "already-existing"
)

// Defaults for a batch that does not say.
const (
	DefaultBatchConcurrency   = 10
	DefaultAttentionGrace     = time.Hour
	DefaultBatchPollInterval  = 30 * time.Second
	MaxBatchServers           = 200
	rackBatchIDPrefix         = "rack/"
	serverStatesStartToClose  = 30 * time.Second
	serverStatesMaximumTrials = 3
)

// RackBatchWorkflowID is the batch's workflow ID.
func RackBatchWorkflowID(site, rack, batchID string) string {
	return rackBatchIDPrefix + site + "/" + rack + "/" + batchID
}

// RackBatchInput starts a batch. Credentials travel as references.
type RackBatchInput struct {
	BatchID string            `json:"batchId"`
	Site    string            `json:"site"`
	Rack    string            `json:"rack"`
	Servers []RackBatchServer `json:"servers"`
	// Concurrency caps lifecycles busy at once (default 10).
	Concurrency int `json:"concurrency,omitempty"`
	// PowerConcurrency caps power operations at once in the rack (default 4).
	PowerConcurrency int `json:"powerConcurrency,omitempty"`
	// AttentionGrace is how long a server may wait in attention before the
	// batch reports it and stops waiting for it (default 1 h).
	AttentionGrace time.Duration `json:"attentionGrace,omitempty"`
	// PollInterval is how often the batch reads its servers' states
	// (default 30 s, or a quarter of a shorter grace).
	PollInterval time.Duration `json:"pollInterval,omitempty"`
	// Actor is who posted the batch, for the asset history.
	Actor string `json:"actor,omitempty"`
}

// RackBatchServer is one server of a batch, already racked at Location.
type RackBatchServer struct {
	Serial   string             `json:"serial"`
	BMC      *activities.BMCRef `json:"bmc,omitempty"`
	Profile  string             `json:"profile,omitempty"`
	Location Location           `json:"location"`
}

// RackBatchStatus answers the batch's status query and is its result.
type RackBatchStatus struct {
	BatchID         string             `json:"batchId"`
	Site            string             `json:"site"`
	Rack            string             `json:"rack"`
	State           string             `json:"state"`
	Total           int                `json:"total"`
	Installed       int                `json:"installed"`
	Failed          int                `json:"failed"`
	Aborted         int                `json:"aborted"`
	AlreadyExisting int                `json:"alreadyExisting"`
	Attention       int                `json:"attention"`
	Running         int                `json:"running"`
	Pending         int                `json:"pending"`
	PerServer       []BatchServerState `json:"perServer"`
	PowerSlots      PowerSlotsStatus   `json:"powerSlots"`
}

// BatchServerState is one server as the batch sees it.
type BatchServerState struct {
	Serial string `json:"serial"`
	State  string `json:"state"`
	Step   string `json:"step,omitempty"`
	Error  string `json:"error,omitempty"`
	// Settled: the batch no longer waits for this server.
	Settled bool `json:"settled"`
}

// ServerStatesInput asks for the status of lifecycles by serial.
type ServerStatesInput struct {
	Serials []string `json:"serials"`
}

// ServerStatesResult answers ServerStates; a serial without a running
// lifecycle, or whose status could not be read, is left out.
type ServerStatesResult struct {
	Servers []ServerStateReport `json:"servers"`
}

// ServerStateReport is the part of a lifecycle's status the batch uses.
type ServerStateReport struct {
	Serial string `json:"serial"`
	State  string `json:"state"`
	Step   string `json:"step,omitempty"`
	Error  string `json:"error,omitempty"`
}

// ValidateRackBatch says what is wrong with a batch, or nil. The API runs
// the same checks (and the inventory's) before it starts one.
func ValidateRackBatch(in RackBatchInput) error {
	if in.BatchID == "" || !isName(in.BatchID, maxNameLength) {
		return fmt.Errorf("batch id is required (letters, digits, '.', '_', '-'; at most %d)", maxNameLength)
	}
	if len(in.Servers) == 0 {
		return errors.New("a batch needs at least one server")
	}
	if len(in.Servers) > MaxBatchServers {
		return fmt.Errorf("a batch has at most %d servers, got %d", MaxBatchServers, len(in.Servers))
	}
	if in.Concurrency < 0 || in.PowerConcurrency < 0 || in.AttentionGrace < 0 || in.PollInterval < 0 {
		return errors.New("concurrency, powerConcurrency, attentionGrace and pollInterval must not be negative")
	}
	serials := map[string]int{}
	units := map[int]string{}
	for i, s := range in.Servers {
		if err := ValidateSerial(s.Serial); err != nil {
			return fmt.Errorf("servers[%d]: %w", i, err)
		}
		if j, dup := serials[s.Serial]; dup {
			return fmt.Errorf("servers[%d]: serial %s is also servers[%d]", i, s.Serial, j)
		}
		serials[s.Serial] = i
		if err := ValidateLocation(s.Location); err != nil {
			return fmt.Errorf("servers[%d] (%s): %w", i, s.Serial, err)
		}
		if s.Location.Site != in.Site || s.Location.Rack != in.Rack {
			return fmt.Errorf("servers[%d] (%s): location %s/%s is not the batch's rack %s/%s", i, s.Serial, s.Location.Site, s.Location.Rack, in.Site, in.Rack)
		}
		if other, dup := units[s.Location.Unit]; dup {
			return fmt.Errorf("servers[%d] (%s): unit %d is also given to %s", i, s.Serial, s.Location.Unit, other)
		}
		units[s.Location.Unit] = s.Serial
	}
	return nil
}

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

package rackbatch

import (
	"fmt"
	"time"

	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"go.temporal.io/sdk/workflow"
)

// powerSlotReminder is how long a lifecycle waits for a grant before asking
// again. The repeat is idempotent for the keeper (same token), and it is how
// a lifecycle notices that its batch has ended: the signal then fails and the
// lifecycle goes on without a slot rather than waiting forever.
const powerSlotReminder = 10 * time.Minute

// powerSlotsChange names the workflow.GetVersion change that introduced
// power slots into the lifecycle; never rename it.
const powerSlotsChange = "rack-power-slots"

// RackPowerSlots is the keeper side, run inside a RackBatch. All its state
// lives in the workflow and is changed only by workflow code, so it replays.
type RackPowerSlots struct {
	limit   int
	holding []batchapi.PowerSlotRequest
	waiting []batchapi.PowerSlotRequest
	granted int
	maxHeld int
}

// ServeRackPowerSlots starts answering power-acquire and power-release
// signals on the calling workflow, with at most limit slots held at once.
func ServeRackPowerSlots(ctx workflow.Context, limit int) *RackPowerSlots {
	if limit < 1 {
		limit = batchapi.DefaultPowerConcurrency
	}
	p := &RackPowerSlots{limit: limit}
	acquire := workflow.GetSignalChannel(ctx, batchapi.SignalPowerAcquire)
	release := workflow.GetSignalChannel(ctx, batchapi.SignalPowerRelease)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(acquire, func(c workflow.ReceiveChannel, _ bool) {
				var r batchapi.PowerSlotRequest
				c.Receive(ctx, &r)
				p.request(ctx, r)
			})
			sel.AddReceive(release, func(c workflow.ReceiveChannel, _ bool) {
				var r batchapi.PowerSlotRelease
				c.Receive(ctx, &r)
				p.drop(r.Serial, r.Token)
			})
			sel.Select(ctx)
			p.grant(ctx)
		}
	})
	return p
}

// Status is a copy of the keeper's state.
func (p *RackPowerSlots) Status() batchapi.PowerSlotsStatus {
	s := batchapi.PowerSlotsStatus{Limit: p.limit, Holding: []string{}, Waiting: []string{}, Granted: p.granted, MaxHeld: p.maxHeld}
	for _, r := range p.holding {
		s.Holding = append(s.Holding, r.Serial)
	}
	for _, r := range p.waiting {
		s.Waiting = append(s.Waiting, r.Serial)
	}
	return s
}

// ReleaseAll frees whatever serial holds or waits for: its lifecycle has
// closed (or was terminated) and will never send power-release.
func (p *RackPowerSlots) ReleaseAll(ctx workflow.Context, serial string) {
	p.drop(serial, "")
	p.grant(ctx)
}

func (p *RackPowerSlots) request(ctx workflow.Context, r batchapi.PowerSlotRequest) {
	for _, h := range p.holding {
		if h.Token == r.Token {
			// A repeated request for a slot already granted: the grant
			// may have been lost with a closed run; send it again.
			p.sendGrant(ctx, h)
			return
		}
	}
	for _, w := range p.waiting {
		if w.Token == r.Token {
			return
		}
	}
	p.waiting = append(p.waiting, r)
}

// drop removes serial's slot and queue place for token, or all of them
// when token is "".
func (p *RackPowerSlots) drop(serial, token string) {
	keep := func(list []batchapi.PowerSlotRequest) []batchapi.PowerSlotRequest {
		out := list[:0]
		for _, r := range list {
			if r.Serial == serial && (token == "" || r.Token == token) {
				continue
			}
			out = append(out, r)
		}
		return out
	}
	p.holding = keep(p.holding)
	p.waiting = keep(p.waiting)
}

// grant hands out free slots first come, first served.
func (p *RackPowerSlots) grant(ctx workflow.Context) {
	for len(p.holding) < p.limit && len(p.waiting) > 0 {
		r := p.waiting[0]
		p.waiting = p.waiting[1:]
		p.holding = append(p.holding, r)
		p.granted++
		p.maxHeld = max(p.maxHeld, len(p.holding))
		p.sendGrant(ctx, r)
	}
}

func (p *RackPowerSlots) sendGrant(ctx workflow.Context, r batchapi.PowerSlotRequest) {
	f := workflow.SignalExternalWorkflow(ctx, r.WorkflowID, "", batchapi.SignalPowerGranted, batchapi.PowerSlotGrant{Token: r.Token})
	workflow.Go(ctx, func(gctx workflow.Context) {
		// A lifecycle that is gone cannot use, nor give back, its slot.
		if err := f.Get(gctx, nil); err != nil {
			workflow.GetLogger(gctx).Warn("power slot grant not delivered; freeing the slot",
				"serial", r.Serial, "error", err)
			p.drop(r.Serial, r.Token)
			p.grant(ctx)
		}
	})
}

// PowerSlot is one held slot, or none for a lifecycle outside a batch.
type PowerSlot struct {
	keeper string
	serial string
	token  string
}

// AcquirePowerSlot waits until keeper, the rack batch that started the
// lifecycle, grants serial a power slot. Outside a batch (keeper "") it
// returns at once and sends nothing, so a standalone lifecycle's history is
// the same with or without the call. If the batch has ended, the lifecycle
// goes on without a slot: a server must not wait forever for a keeper that
// is gone.
func AcquirePowerSlot(ctx workflow.Context, keeper, serial string) (*PowerSlot, error) {
	if keeper == "" {
		return &PowerSlot{}, nil
	}
	// Batch children recorded before lifecycles asked for slots replay
	// without asking; the marker goes only into batch children's
	// histories, so a standalone lifecycle's history does not change.
	if workflow.GetVersion(ctx, powerSlotsChange, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		return &PowerSlot{}, nil
	}
	info := workflow.GetInfo(ctx)
	// The history length is the same on every replay and different for
	// every acquisition of this run.
	token := fmt.Sprintf("%s#%d", info.WorkflowExecution.RunID, info.GetCurrentHistoryLength())
	req := batchapi.PowerSlotRequest{Serial: serial, WorkflowID: info.WorkflowExecution.ID, Token: token}
	granted := workflow.GetSignalChannel(ctx, batchapi.SignalPowerGranted)
	log := workflow.GetLogger(ctx)
	for {
		if err := workflow.SignalExternalWorkflow(ctx, keeper, "", batchapi.SignalPowerAcquire, req).Get(ctx, nil); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			log.Warn("rack batch cannot be asked for a power slot; going on without one", "keeper", keeper, "error", err)
			return &PowerSlot{}, nil
		}
		deadline := workflow.Now(ctx).Add(powerSlotReminder)
		for {
			var g batchapi.PowerSlotGrant
			left := deadline.Sub(workflow.Now(ctx))
			if left <= 0 {
				break
			}
			ok, more := granted.ReceiveWithTimeout(ctx, left, &g)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !ok || !more {
				break
			}
			if g.Token == token {
				return &PowerSlot{keeper: keeper, serial: serial, token: token}, nil
			}
			// A grant for an earlier acquisition of this run, arriving
			// after it was given up: not ours now.
		}
		log.Info("still waiting for a power slot", "keeper", keeper, "serial", serial)
	}
}

// Release gives the slot back. It runs on a disconnected context so a
// cancelled lifecycle still frees its slot.
func (s *PowerSlot) Release(ctx workflow.Context) {
	if s == nil || s.keeper == "" {
		return
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	// A batch that has ended keeps no slots; nothing to do if it is gone.
	_ = workflow.SignalExternalWorkflow(dctx, s.keeper, "", batchapi.SignalPowerRelease, batchapi.PowerSlotRelease{Serial: s.serial, Token: s.token}).Get(dctx, nil)
	s.keeper = ""
}

// WithPowerSlot runs fn, a power-changing step of serial's lifecycle,
// while holding one of the rack's power slots from keeper.
func WithPowerSlot(ctx workflow.Context, keeper, serial string, fn func() error) error {
	slot, err := AcquirePowerSlot(ctx, keeper, serial)
	if err != nil {
		return err
	}
	defer slot.Release(ctx)
	return fn()
}

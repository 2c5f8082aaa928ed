package server

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

// PowerSlot is one held slot, or none for a lifecycle outside a batch.
type PowerSlot struct {
	keeper string
	serial string
	token  string
}

// PowerSlotKeeper is the workflow ID of the RackBatch that keeps this
// lifecycle's power slots, or "" when the lifecycle was started on its own
// (by POST /api/v1/servers) and no rack limit applies.
func PowerSlotKeeper(ctx workflow.Context) string {
	parent := workflow.GetInfo(ctx).ParentWorkflowExecution
	if parent == nil || !batchapi.IsRackBatchWorkflowID(parent.ID) {
		return ""
	}
	return parent.ID
}

// AcquirePowerSlot waits until the rack's batch grants serial a power
// slot. Outside a batch it returns at once and sends nothing, so a
// standalone lifecycle's history is the same with or without the call. If
// the batch has ended, the lifecycle goes on without a slot: a server must
// not wait forever for a keeper that is gone.
func AcquirePowerSlot(ctx workflow.Context, serial string) (*PowerSlot, error) {
	keeper := PowerSlotKeeper(ctx)
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
// while holding one of the rack's power slots.
func WithPowerSlot(ctx workflow.Context, serial string, fn func() error) error {
	slot, err := AcquirePowerSlot(ctx, serial)
	if err != nil {
		return err
	}
	defer slot.Release(ctx)
	return fn()
}

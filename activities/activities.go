// Package activities holds what metalflow's activity packages share. The
// activities themselves live in one package per domain, named after the
// workflows that call them: server (inventory, BMC provisioning, cloud,
// decommission, load-balancer membership), rackbatch and vip. Every
// activity is idempotent, because Temporal may run it more than once.
package activities

import (
	"context"
	"errors"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Registrar is the part of a Temporal worker that activities register on.
type Registrar interface {
	RegisterActivityWithOptions(a interface{}, options activity.RegisterOptions)
}

// RegisterByName registers each activity under its name from a contract
// package: names are part of recorded histories, so they never come from
// the Go function's name.
func RegisterByName(r Registrar, byName map[string]any) {
	for name, fn := range byName {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// InventoryError turns the CMDB's verdicts into non-retryable application
// errors and leaves everything else (database down, timeouts) to
// Temporal's retries.
func InventoryError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, inventory.ErrOccupied):
		return temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeUnitOccupied, nil)
	case errors.Is(err, inventory.ErrInvalid):
		return temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeInvalidPlacement, nil)
	case errors.Is(err, inventory.ErrNotFound):
		return temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeNotFound, nil)
	}
	return err
}

// keepAliveInterval is how often a long activity tells Temporal its worker
// is still alive; activity options set a heartbeat timeout a few times this.
const keepAliveInterval = 5 * time.Second

// KeepAlive heartbeats while a long call runs (a BMC conversation, an
// Ironic transition, a VIP's rollout), so a worker killed in the middle is
// noticed at the heartbeat timeout rather than at StartToClose, which is
// minutes. Outside an activity (a test calling the method) it does nothing.
func KeepAlive(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(keepAliveInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

// Package activities holds all of metalflow's I/O as Temporal activities:
// the CMDB, BMCs, the cloud and the load balancer. Every activity is
// idempotent, because Temporal may run it more than once.
package activities

import (
	"context"
	"errors"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/inventory"
)

// Inventory runs the CMDB's activities.
type Inventory struct {
	Store *inventory.Store
}

// RackServer claims the rack units for the server in the CMDB. Claiming the
// same units again is a no-op, so a retried activity is harmless.
func (a *Inventory) RackServer(ctx context.Context, in RackServerInput) error {
	err := a.Store.PlaceAsset(ctx, in.Serial, inventory.Placement{
		Site: in.Site, Room: in.Room, Rack: in.Rack, Unit: in.Unit, Face: in.Face, HeightU: in.HeightU,
	}, in.Actor)
	return classify(err)
}

// ReleaseRackUnit frees the server's rack units; freeing nothing is fine.
func (a *Inventory) ReleaseRackUnit(ctx context.Context, in ReleaseRackUnitInput) error {
	return classify(a.Store.ReleaseAsset(ctx, in.Serial, in.Actor, in.Reason))
}

// classify turns the CMDB's verdicts into non-retryable application errors
// and leaves everything else (database down, timeouts) to Temporal's retries.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, inventory.ErrOccupied):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeUnitOccupied, nil)
	case errors.Is(err, inventory.ErrInvalid):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidPlacement, nil)
	case errors.Is(err, inventory.ErrNotFound):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeNotFound, nil)
	}
	return err
}

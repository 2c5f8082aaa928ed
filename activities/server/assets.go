// Package server runs the I/O of a server's lifecycle and decommission:
// its CMDB records, its BMC over Redfish (inspect, BIOS, RAID, install,
// wipe), its cloud registration, its load-balancer membership, and the
// watch the decommission keeps on its lifecycle.
package server

import (
	"context"
	"errors"
	"strings"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// Assets runs the steps that only touch the CMDB: the server's rack units,
// its asset record and its monitoring targets.
type Assets struct {
	Inventory AssetInventory
}

// AssetInventory is what the asset steps change in the CMDB.
type AssetInventory interface {
	PlaceAsset(ctx context.Context, serial string, p inventory.Placement, actor string) error
	ReleaseAsset(ctx context.Context, serial, actor, reason string) error
	RegisterAsset(ctx context.Context, rec inventory.AssetRecord, actor string) (changed bool, err error)
	SetState(ctx context.Context, serial, state, actor, detail string) error
	UpsertTarget(ctx context.Context, t inventory.Target) error
	RemoveTargets(ctx context.Context, serial string) error
	RetireBoot(ctx context.Context, serial string) error
}

// Register registers the asset steps under their stable names.
func (a *Assets) Register(r activities.Registrar) {
	activities.RegisterByName(r, map[string]any{
		serverapi.RackServerName:         a.RackServer,
		serverapi.ReleaseRackUnitName:    a.ReleaseRackUnit,
		serverapi.RegisterAssetName:      a.RegisterAsset,
		serverapi.SetAssetStateName:      a.SetAssetState,
		serverapi.RegisterMonitoringName: a.RegisterMonitoring,
		serverapi.AbortServerName:        a.AbortServer,
		serverapi.CancelServerName:       a.CancelServer,
		serverapi.RetireAssetName:        a.RetireAsset,
	})
}

// RackServer claims the rack units for the server in the CMDB. Claiming the
// same units again is a no-op, so a retried activity is harmless.
func (a *Assets) RackServer(ctx context.Context, in serverapi.RackServerInput) error {
	err := a.Inventory.PlaceAsset(ctx, in.Serial, inventory.Placement{
		Site: in.Site, Room: in.Room, Rack: in.Rack, Unit: in.Unit, Face: in.Face, HeightU: in.HeightU,
	}, in.Actor)
	return activities.InventoryError(err)
}

// ReleaseRackUnit frees the server's rack units; freeing nothing is fine.
func (a *Assets) ReleaseRackUnit(ctx context.Context, in serverapi.ReleaseRackUnitInput) error {
	return activities.InventoryError(a.Inventory.ReleaseAsset(ctx, in.Serial, in.Actor, in.Reason))
}

// RegisterAsset records the server in the CMDB; registering twice is a no-op.
func (a *Assets) RegisterAsset(ctx context.Context, in serverapi.RegisterAssetInput) error {
	_, err := a.Inventory.RegisterAsset(ctx, inventory.AssetRecord{
		Serial: in.Serial, BMCAddress: in.BMCAddress, State: "registered",
	}, in.Actor)
	return activities.InventoryError(err)
}

// SetAssetState records a lifecycle state on the asset; idempotent.
func (a *Assets) SetAssetState(ctx context.Context, in serverapi.SetAssetStateInput) error {
	return activities.InventoryError(a.Inventory.SetState(ctx, in.Serial, in.State, in.Actor, in.Detail))
}

// RegisterMonitoring publishes the BMC in service discovery; idempotent.
func (a *Assets) RegisterMonitoring(ctx context.Context, in serverapi.RegisterMonitoringInput) error {
	return activities.InventoryError(a.Inventory.UpsertTarget(ctx, inventory.Target{
		Serial: in.Serial, Kind: inventory.TargetBMC, Address: in.BMCAddress,
		Labels: map[string]string{"site": in.Site, "rack": in.Rack, "role": in.Role},
	}))
}

// CancelServer withdraws any pending netboot of a lifecycle that was
// cancelled, and records in the asset history where provisioning stopped.
// The rack unit stays claimed: the server is still in it. A server never
// registered as an asset has no history to write to; that is not an error.
func (a *Assets) CancelServer(ctx context.Context, in serverapi.CancelServerInput) error {
	if err := a.Inventory.RetireBoot(ctx, in.Serial); err != nil {
		return activities.InventoryError(err)
	}
	detail := "provisioning cancelled for decommissioning"
	if in.Step != "" {
		detail += " during " + in.Step
	}
	err := a.Inventory.SetState(ctx, in.Serial, "cancelled", "lifecycle", detail)
	if errors.Is(err, inventory.ErrNotFound) {
		return nil
	}
	return activities.InventoryError(err)
}

// AbortServer frees the rack unit, stops any pending install and marks the
// asset aborted. Each part is idempotent, so a retry finishes the rest.
func (a *Assets) AbortServer(ctx context.Context, in serverapi.AbortServerInput) error {
	if err := a.Inventory.ReleaseAsset(ctx, in.Serial, in.Actor, "aborted: "+in.Reason); err != nil {
		return activities.InventoryError(err)
	}
	if err := a.Inventory.RetireBoot(ctx, in.Serial); err != nil {
		return err
	}
	if err := a.Inventory.RemoveTargets(ctx, in.Serial); err != nil {
		return err
	}
	err := a.Inventory.SetState(ctx, in.Serial, "aborted", in.Actor, in.Reason)
	if err != nil && !strings.Contains(err.Error(), "not found") {
		return activities.InventoryError(err)
	}
	return nil
}

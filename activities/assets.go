package activities

import (
	"context"
	"errors"
	"strings"

	"github.com/metalflow/metalflow/inventory"
)

// RegisterAsset records the server in the CMDB; registering twice is a no-op.
func (p *Provisioning) RegisterAsset(ctx context.Context, in RegisterAssetInput) error {
	_, err := p.Inventory.RegisterAsset(ctx, inventory.AssetRecord{
		Serial: in.Serial, BMCAddress: in.BMCAddress, State: "registered",
	}, in.Actor)
	return classify(err)
}

// SetAssetState records a lifecycle state on the asset; idempotent.
func (p *Provisioning) SetAssetState(ctx context.Context, in SetAssetStateInput) error {
	return classify(p.Inventory.SetState(ctx, in.Serial, in.State, in.Actor, in.Detail))
}

// RegisterMonitoring publishes the BMC in service discovery; idempotent.
func (p *Provisioning) RegisterMonitoring(ctx context.Context, in RegisterMonitoringInput) error {
	return classify(p.Inventory.UpsertTarget(ctx, inventory.Target{
		Serial: in.Serial, Kind: inventory.TargetBMC, Address: in.BMCAddress,
		Labels: map[string]string{"site": in.Site, "rack": in.Rack, "role": in.Role},
	}))
}

// CancelServer withdraws any pending netboot of a lifecycle that was
// cancelled, and records in the asset history where provisioning stopped.
// The rack unit stays claimed: the server is still in it. A server never
// registered as an asset has no history to write to; that is not an error.
func (p *Provisioning) CancelServer(ctx context.Context, in CancelServerInput) error {
	if err := p.Inventory.RetireBoot(ctx, in.Serial); err != nil {
		return classify(err)
	}
	detail := "provisioning cancelled for decommissioning"
	if in.Step != "" {
		detail += " during " + in.Step
	}
	err := p.Inventory.SetState(ctx, in.Serial, "cancelled", "lifecycle", detail)
	if errors.Is(err, inventory.ErrNotFound) {
		return nil
	}
	return classify(err)
}

// AbortServer frees the rack unit, stops any pending install and marks the
// asset aborted. Each part is idempotent, so a retry finishes the rest.
func (p *Provisioning) AbortServer(ctx context.Context, in AbortServerInput) error {
	if err := p.Inventory.ReleaseAsset(ctx, in.Serial, in.Actor, "aborted: "+in.Reason); err != nil {
		return classify(err)
	}
	if err := p.Inventory.RetireBoot(ctx, in.Serial); err != nil {
		return err
	}
	if err := p.Inventory.RemoveTargets(ctx, in.Serial); err != nil {
		return err
	}
	err := p.Inventory.SetState(ctx, in.Serial, "aborted", in.Actor, in.Reason)
	if err != nil && !strings.Contains(err.Error(), "not found") {
		return classify(err)
	}
	return nil
}

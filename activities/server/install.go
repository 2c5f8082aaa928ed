package server

import (
	"context"
	"encoding/json"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// StartInstall issues the attempt's boot config and one-time token, turns
// the server off, sets a one-time PXE boot and turns it on into the
// installer, or into metalflow's deploy agent when the attempt carries a
// deploy plan. The boot happens once per attempt even when the activity
// runs twice, or is cut short anywhere by a dying worker.
func (p *Provisioning) StartInstall(ctx context.Context, in serverapi.StartInstallInput) error {
	boot, err := p.Inventory.IssueBoot(ctx, in.Serial, in.Attempt, in.MACs, in.TTL)
	if err != nil {
		return activities.InventoryError(err)
	}
	if in.Deploy != nil {
		if err := p.planDeploy(ctx, in); err != nil {
			return err
		}
	}
	return p.withMachine(ctx, in.BMC, func(m hardware.Machine) error {
		state, err := m.PowerState(ctx)
		if err != nil {
			return err
		}
		// The cycle is recorded only while the host is off, just before
		// it is turned on: a host found running after that has had its
		// boot, while one still off (the run died in between) is owed it.
		if boot.CycledAt != nil && state != hardware.PowerOff {
			return nil
		}
		// Off first: a boot already under way (the BIOS step's reset) would
		// otherwise use up the one-time PXE override before our restart,
		// and the restart would then boot from disk and never install.
		if state != hardware.PowerOff {
			if err := m.SetPower(ctx, hardware.PowerOff); err != nil {
				return err
			}
		}
		if _, err := p.Inventory.MarkCycled(ctx, in.Serial, in.Attempt); err != nil {
			return err
		}
		if err := m.SetBootDevice(ctx, hardware.BootPXE, true); err != nil {
			return err
		}
		return m.SetPower(ctx, hardware.PowerOn)
	})
}

// planDeploy records the attempt's plan before the server netboots: the
// boot service chains the agent only for an attempt with a plan, and hands
// the agent the image the attempt's token may fetch.
func (p *Provisioning) planDeploy(ctx context.Context, in serverapi.StartInstallInput) error {
	plan, err := json.Marshal(in.Deploy)
	if err != nil {
		return err
	}
	if err := p.Inventory.SetDeployPlan(ctx, in.Serial, in.Attempt, plan); err != nil {
		return activities.InventoryError(err)
	}
	return activities.InventoryError(p.Inventory.SetBootImage(ctx, in.Serial, in.Attempt, in.Deploy.Image))
}

// FinishInstall retires the boot config (the next netboot falls through to
// the disk), makes the disk the boot device, and marks the asset installed.
func (p *Provisioning) FinishInstall(ctx context.Context, in serverapi.FinishInstallInput) error {
	if err := p.Inventory.RetireBoot(ctx, in.Serial); err != nil {
		return err
	}
	if err := p.withMachine(ctx, in.BMC, func(m hardware.Machine) error {
		return m.SetBootDevice(ctx, hardware.BootDisk, false)
	}); err != nil {
		return err
	}
	return activities.InventoryError(p.Inventory.SetState(ctx, in.Serial, "installed", in.Actor, "installer phoned home"))
}

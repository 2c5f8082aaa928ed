package server

import (
	"context"
	"fmt"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// DecideDeploy records the lifecycle's word on a deploy attempt's plan,
// which the boot service passes to the agent asking for it: the plan once
// released, the reason once refused. The same decision again is a no-op.
func (p *Provisioning) DecideDeploy(ctx context.Context, in serverapi.DecideDeployInput) error {
	return activities.InventoryError(p.Inventory.DecideDeploy(ctx, in.Serial, in.Attempt, in.Release, in.Reason))
}

// BootFromDisk makes the disk the agent wrote the server's boot device for
// good and powers the server on into it. The agent powers the server off
// once its result is accepted, so a server still on (the agent shutting
// down) is turned off first, to boot the disk now rather than whenever it
// next restarts. The power-on happens once per attempt even when the
// activity runs twice, or is cut short anywhere by a dying worker.
func (p *Provisioning) BootFromDisk(ctx context.Context, in serverapi.BootFromDiskInput) error {
	attempts, err := p.Inventory.BootAttempts(ctx, in.Serial)
	if err != nil {
		return activities.InventoryError(err)
	}
	if len(attempts) == 0 {
		return activities.InventoryError(fmt.Errorf("%w: %s has no install attempt whose disk could boot", inventory.ErrNotFound, in.Serial))
	}
	// The input names no attempt; the latest is the one written, since
	// only a new install issues another.
	boot := attempts[len(attempts)-1]
	return p.withMachine(ctx, in.BMC, func(m hardware.Machine) error {
		state, err := m.PowerState(ctx)
		if err != nil {
			return err
		}
		// As in StartInstall: the boot is recorded while the server is off,
		// just before it is turned on, so one found running after that has
		// had it and one still off is owed it.
		if boot.DiskBootedAt != nil && state != hardware.PowerOff {
			return nil
		}
		if state != hardware.PowerOff {
			if err := m.SetPower(ctx, hardware.PowerOff); err != nil {
				return err
			}
		}
		// Persistent: every later reboot, and a BMC that would otherwise
		// fall back to the network, boots the installed OS.
		if err := m.SetBootDevice(ctx, hardware.BootDisk, false); err != nil {
			return err
		}
		if _, err := p.Inventory.MarkDiskBooted(ctx, in.Serial, boot.Attempt); err != nil {
			return err
		}
		return m.SetPower(ctx, hardware.PowerOn)
	})
}

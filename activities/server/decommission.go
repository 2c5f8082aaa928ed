package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/cloud"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// LeaveAggregate takes a hypervisor out of its rack's Nova aggregate, so
// the scheduler stops placing instances on a host about to be wiped. A
// host not in the aggregate is success.
func (c *Cloud) LeaveAggregate(ctx context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
	if c.Compute == nil {
		return serverapi.DecommissionStepResult{Skipped: true, Note: serverapi.NoteNoNova}, nil
	}
	agg := cloud.FailureDomain{Site: in.Site, Room: in.Room, Rack: in.Rack}.Aggregate()
	stop := activities.KeepAlive(ctx)
	defer stop()
	if err := c.Compute.RemoveHostFromAggregate(ctx, agg.Name, in.Host); err != nil {
		return serverapi.DecommissionStepResult{}, cloudError(err)
	}
	note := fmt.Sprintf("host %s not in aggregate %s", in.Host, agg.Name)
	return serverapi.DecommissionStepResult{Note: note}, activities.InventoryError(c.Inventory.RecordStep(ctx, in.Serial, in.Key, in.Actor, "aggregate left", note))
}

// DeleteCloudNode removes the server's Ironic node (managing it first);
// a node already gone is success, so the step may run twice.
func (c *Cloud) DeleteCloudNode(ctx context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
	if c.Ironic == nil {
		return serverapi.DecommissionStepResult{Skipped: true, Note: serverapi.NoteNoIronic}, nil
	}
	stop := activities.KeepAlive(ctx)
	err := c.Ironic.DeleteNode(ctx, in.Serial)
	stop()
	if err != nil {
		return serverapi.DecommissionStepResult{}, cloudError(err)
	}
	return serverapi.DecommissionStepResult{}, activities.InventoryError(c.Inventory.RecordStep(ctx, in.Serial, in.Key, in.Actor, "cloud node deleted",
		"Ironic node of "+in.Serial+" deleted (or already gone)"))
}

// WipeServer deletes every RAID volume and secure-erases every drive that
// offers Drive.SecureErase. Volumes go first: BMCs refuse to erase a drive
// a volume still uses. Drives without the action (Supermicro's controllers)
// are left with their volumes deleted, and the note says so, because a
// volume delete is not an erase and whoever ships the drives must know.
// Running it again finds no volumes and erases again, which is harmless.
func (p *Provisioning) WipeServer(ctx context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
	var volumes, erased int
	var unsupported []string
	err := p.withMachine(ctx, in.BMC, func(m hardware.Machine) error {
		ctls, err := m.Storage(ctx)
		if err != nil {
			return err
		}
		for _, c := range ctls {
			for _, v := range c.Volumes {
				if err := m.DeleteVolume(ctx, v.ID); err != nil {
					return err
				}
				volumes++
			}
		}
		for _, c := range ctls {
			for _, d := range c.Drives {
				err := m.SecureErase(ctx, d.ID)
				var hw *hardware.Error
				if errors.As(err, &hw) && hw.Kind == hardware.Unsupported {
					unsupported = append(unsupported, d.ID)
					continue
				}
				if err != nil {
					return err
				}
				erased++
			}
		}
		return nil
	})
	if err != nil {
		return serverapi.DecommissionStepResult{}, err
	}
	note := fmt.Sprintf("%d volume(s) deleted, %d drive(s) secure-erased", volumes, erased)
	if len(unsupported) > 0 {
		note += fmt.Sprintf("; no secure erase on %s: volumes deleted only, erase those drives by other means", strings.Join(unsupported, ", "))
	}
	return serverapi.DecommissionStepResult{Note: note}, activities.InventoryError(p.Inventory.RecordStep(ctx, in.Serial, in.Key, in.Actor, "drives wiped", note))
}

// ResetBIOSDefaults stages the BIOS defaults and resets the server once
// per key (run and retry), like ConfigureBIOS: a repeated activity does
// not reboot the server a second time, nor stage the defaults again once
// the reset is under way (a reset to defaults left pending would strike
// at the next boot, in the middle of a later provisioning).
func (p *Provisioning) ResetBIOSDefaults(ctx context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
	key := "bios-defaults/" + in.Key
	err := p.withMachine(ctx, in.BMC, func(m hardware.Machine) error {
		// Recorded means staged: resetOnce records only after this.
		staged, err := p.Inventory.Recorded(ctx, in.Serial, key)
		if err != nil {
			return err
		}
		if !staged {
			if err := m.ResetBIOS(ctx); err != nil {
				return err
			}
		}
		_, err = p.resetOnce(ctx, m, in.Serial, key)
		return err
	})
	if err != nil {
		return serverapi.DecommissionStepResult{}, err
	}
	return serverapi.DecommissionStepResult{}, activities.InventoryError(p.Inventory.RecordStep(ctx, in.Serial, in.Key, in.Actor, "bios reset", "BIOS defaults staged and applied by a reset"))
}

// PowerOffServer turns the server off; off already is success.
func (p *Provisioning) PowerOffServer(ctx context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
	err := p.withMachine(ctx, in.BMC, func(m hardware.Machine) error {
		state, err := m.PowerState(ctx)
		if err != nil || state == hardware.PowerOff {
			return err
		}
		return m.SetPower(ctx, hardware.PowerOff)
	})
	if err != nil {
		return serverapi.DecommissionStepResult{}, err
	}
	return serverapi.DecommissionStepResult{}, activities.InventoryError(p.Inventory.RecordStep(ctx, in.Serial, in.Key, in.Actor, "powered off", "server powered off for unracking"))
}

// RetireAsset stops monitoring the server and any pending netboot, and
// marks the asset decommissioned; each part is idempotent.
func (a *Assets) RetireAsset(ctx context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
	if err := a.Inventory.RemoveTargets(ctx, in.Serial); err != nil {
		return serverapi.DecommissionStepResult{}, err
	}
	if err := a.Inventory.RetireBoot(ctx, in.Serial); err != nil {
		return serverapi.DecommissionStepResult{}, err
	}
	err := a.Inventory.SetState(ctx, in.Serial, "decommissioned", in.Actor,
		"wiped and powered off; monitoring targets removed; waiting to be unracked")
	if errors.Is(err, inventory.ErrNotFound) {
		// Cancelled before RegisterAsset: the CMDB never knew it.
		return serverapi.DecommissionStepResult{Note: "no asset record: the server was never registered in the inventory"}, nil
	}
	return serverapi.DecommissionStepResult{}, activities.InventoryError(err)
}

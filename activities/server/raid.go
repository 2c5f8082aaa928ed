package server

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// ConfigureRAID makes the volumes match the profile's logical disks: a
// volume that already satisfies a disk is kept, one that satisfies none is
// deleted, missing ones are created. Run twice, the second run finds the
// first run's volumes and keeps them: never a second volume.
func (p *Provisioning) ConfigureRAID(ctx context.Context, in serverapi.ConfigureRAIDInput) (serverapi.ConfigureRAIDResult, error) {
	prof, err := p.Profiles.Select(in.Profile, in.Vendor, "")
	if err != nil {
		return serverapi.ConfigureRAIDResult{}, temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeUnknownProfile, nil)
	}
	var res serverapi.ConfigureRAIDResult
	if len(prof.RAID.LogicalDisks) == 0 {
		return res, nil
	}
	err = p.withMachine(ctx, in.BMC, func(m hardware.Machine) error {
		err := applyRAID(ctx, m, prof.RAID.LogicalDisks, &res)
		res.Report = readRAIDReport(ctx, m, prof.RAID.LogicalDisks)
		return err
	})
	return res, withReport(err, res.Report)
}

// applyRAID deletes, keeps and creates volumes as planRAID says.
func applyRAID(ctx context.Context, m hardware.Machine, disks []profiles.LogicalDisk, res *serverapi.ConfigureRAIDResult) error {
	ctrls, err := m.Storage(ctx)
	if err != nil {
		return err
	}
	ctrl, err := pickController(ctrls, disks)
	if err != nil {
		return err
	}
	plan, err := planRAID(ctrl, disks)
	if err != nil {
		return err
	}
	res.Kept = plan.keep
	for _, id := range plan.remove {
		if err := m.DeleteVolume(ctx, id); err != nil {
			return err
		}
		res.Deleted = append(res.Deleted, id)
	}
	for _, req := range plan.create {
		v, err := m.CreateVolume(ctx, req)
		if err != nil {
			return err
		}
		res.Created = append(res.Created, v.ID)
	}
	return nil
}

type raidPlan struct {
	keep   []string
	remove []string
	create []hardware.VolumeRequest
}

// pickController chooses the controller with the most drives; profiles
// name drives by ID, which are unique per controller.
func pickController(ctrls []hardware.StorageController, disks []profiles.LogicalDisk) (hardware.StorageController, error) {
	if len(ctrls) == 0 {
		return hardware.StorageController{}, temporal.NewNonRetryableApplicationError("the BMC shows no storage controller", stepapi.ErrTypeRAIDImpossible, nil)
	}
	best := ctrls[0]
	for _, c := range ctrls[1:] {
		if len(c.Drives) > len(best.Drives) {
			best = c
		}
	}
	return best, nil
}

func planRAID(ctrl hardware.StorageController, disks []profiles.LogicalDisk) (raidPlan, error) {
	var plan raidPlan
	used := map[string]bool{}
	matched := make([]bool, len(disks))
	// Keep volumes that already are one of the wanted disks.
	for _, v := range ctrl.Volumes {
		keep := false
		for i, d := range disks {
			if matched[i] || !volumeSatisfies(v, d) {
				continue
			}
			matched[i], keep = true, true
			break
		}
		if keep {
			plan.keep = append(plan.keep, v.ID)
			for _, id := range v.DriveIDs {
				used[id] = true
			}
		} else {
			plan.remove = append(plan.remove, v.ID)
		}
	}
	free := make([]string, 0, len(ctrl.Drives))
	for _, d := range ctrl.Drives {
		if !used[d.ID] {
			free = append(free, d.ID)
		}
	}
	sort.Strings(free)
	for i, d := range disks {
		if matched[i] {
			continue
		}
		need, err := profiles.DrivesFor(d.RAIDLevel)
		if err != nil {
			return raidPlan{}, temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeRAIDImpossible, nil)
		}
		level := profiles.RedfishRAIDType(d.RAIDLevel)
		if len(ctrl.SupportedRAID) > 0 && !slices.Contains(ctrl.SupportedRAID, level) {
			return raidPlan{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("controller %s does not offer %s (offers %v)", ctrl.ID, level, ctrl.SupportedRAID), stepapi.ErrTypeRAIDImpossible, nil)
		}
		var drives []string
		if len(d.PhysicalDisks) > 0 {
			for _, want := range d.PhysicalDisks {
				if !slices.Contains(free, want) {
					return raidPlan{}, temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("drive %s is not a free drive of controller %s (free: %v)", want, ctrl.ID, free), stepapi.ErrTypeRAIDImpossible, nil)
				}
			}
			drives = slices.Clone(d.PhysicalDisks)
		} else {
			if len(free) < need {
				return raidPlan{}, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("%s needs %d free drives, controller %s has %d", level, need, ctrl.ID, len(free)), stepapi.ErrTypeRAIDImpossible, nil)
			}
			// A copy: free is edited in place below.
			drives = slices.Clone(free[:need])
		}
		size, err := d.SizeBytes()
		if err != nil {
			return raidPlan{}, temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeRAIDImpossible, nil)
		}
		name := "metalflow-data"
		if d.IsRootVolume {
			name = "metalflow-root"
		}
		plan.create = append(plan.create, hardware.VolumeRequest{
			ControllerID: ctrl.ID, RAIDType: level, DriveIDs: drives, Name: name, CapacityBytes: size,
		})
		free = slices.DeleteFunc(free, func(id string) bool { return slices.Contains(drives, id) })
	}
	return plan, nil
}

// volumeSatisfies says whether an existing volume is the wanted disk: same
// level and, when the profile names drives, the same drives.
func volumeSatisfies(v hardware.Volume, d profiles.LogicalDisk) bool {
	if v.RAIDType != profiles.RedfishRAIDType(d.RAIDLevel) {
		return false
	}
	if len(d.PhysicalDisks) == 0 {
		return true
	}
	a, b := slices.Clone(v.DriveIDs), slices.Clone(d.PhysicalDisks)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

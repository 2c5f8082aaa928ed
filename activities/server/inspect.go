package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// InspectServer reads the hardware through the BMC, records it on the
// asset, and checks it against the profile. A shortfall parks the server:
// it is recorded first, so staff see what was found.
func (p *Provisioning) InspectServer(ctx context.Context, in serverapi.InspectServerInput) (serverapi.InspectServerResult, error) {
	if err := p.checkBMCSite(ctx, in.Serial, in.BMC.Address); err != nil {
		return serverapi.InspectServerResult{}, err
	}
	var inv hardware.Inventory
	if err := p.withMachine(ctx, in.BMC, func(m hardware.Machine) error {
		var err error
		inv, err = m.Inventory(ctx)
		return err
	}); err != nil {
		return serverapi.InspectServerResult{}, err
	}
	prof, err := p.Profiles.Select(in.Profile, inv.Vendor, inv.Model)
	if errors.Is(err, profiles.ErrUnknownProfile) {
		return serverapi.InspectServerResult{}, temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeUnknownProfile, nil)
	}
	if err != nil {
		return serverapi.InspectServerResult{}, err
	}
	macs := make([]string, 0, len(inv.NICs))
	for _, n := range inv.NICs {
		if n.MAC != "" {
			macs = append(macs, inventory.NormalizeMAC(n.MAC))
		}
	}
	hw, err := json.Marshal(inv)
	if err != nil {
		return serverapi.InspectServerResult{}, err
	}
	problems, unsure := checkMinimum(prof, inv, len(macs))
	state := "inspected"
	switch {
	case len(problems) > 0:
		state = "inspection-mismatch"
	case len(unsure) > 0:
		state = "inspection-incomplete"
	}
	if _, err := p.Inventory.RegisterAsset(ctx, inventory.AssetRecord{
		Serial: in.Serial, Vendor: inv.Vendor, Model: inv.Model, MACs: macs, Hardware: hw, State: state,
	}, in.Actor); err != nil {
		return serverapi.InspectServerResult{}, activities.InventoryError(err)
	}
	if inv.Serial != "" && !strings.EqualFold(inv.Serial, in.Serial) {
		problems = append(problems, fmt.Sprintf("the BMC reports serial %s, not %s (wrong BMC address?)", inv.Serial, in.Serial))
	}
	if len(problems) > 0 {
		return serverapi.InspectServerResult{}, mismatch("hardware does not meet profile %q: %s", prof.Name, strings.Join(append(problems, unsure...), "; "))
	}
	if len(unsure) > 0 {
		return serverapi.InspectServerResult{}, temporal.NewNonRetryableApplicationError(strings.Join(unsure, "; "), stepapi.ErrTypeInventoryIncomplete, nil)
	}
	var localBytes int64
	for _, d := range inv.Drives {
		localBytes += d.CapacityBytes
	}
	return serverapi.InspectServerResult{
		Vendor: inv.Vendor, Model: inv.Model, MACs: macs, Profile: prof.Name, Role: prof.Role, ResourceClass: prof.ResourceClass,
		CPUs: inv.TotalThreads, MemoryMiB: inv.MemoryGiB * 1024, LocalGB: int(localBytes / 1_000_000_000), CPUArch: inv.CPUArch,
		Drives: len(inv.Drives), InstallTimeout: prof.InstallTimeout(), InstallAttempts: prof.InstallAttempts(),
		SystemSerial: inv.Serial, Image: prof.Image, RootDevice: prof.RootDevice,
		SSHAuthorizedKeys: prof.SSHAuthorizedKeys, UserData: prof.UserData, Warnings: warningsOf(inv),
	}, nil
}

// warningsOf are the inventory's warnings as the lifecycle keeps them.
func warningsOf(inv hardware.Inventory) []serverapi.InventoryWarning {
	var out []serverapi.InventoryWarning
	for _, w := range inv.Warnings {
		out = append(out, serverapi.InventoryWarning{Path: w.Path, Error: w.Error})
	}
	return out
}

// checkMinimum judges the hardware that was read against the profile's
// minimums. A shortfall is a problem, unless a warning on that part
// leaves open whether the server has more than was read: then it cannot
// be told, and the warnings say what a human must look at.
func checkMinimum(prof profiles.Profile, inv hardware.Inventory, macs int) (problems, unsure []string) {
	want := prof.Minimum
	for _, c := range []struct {
		part, what string
		have, need int
	}{
		{hardware.PartCPUs, "CPUs", len(inv.CPUs), want.CPUs},
		{hardware.PartMemory, "GiB memory", inv.MemoryGiB, want.MemoryGiB},
		{hardware.PartDrives, "drives", len(inv.Drives), want.Drives},
		{hardware.PartNICs, "NICs with a MAC", macs, want.NICs},
	} {
		if c.have >= c.need {
			continue
		}
		var why []string
		for _, w := range inv.Warnings {
			if w.Part == c.part {
				why = append(why, w.Path+" "+w.Error)
			}
		}
		if len(why) == 0 {
			problems = append(problems, fmt.Sprintf("%d %s, profile needs %d", c.have, c.what, c.need))
			continue
		}
		unsure = append(unsure, fmt.Sprintf("cannot tell whether the server has the %d %s profile %q needs: %d read; %s",
			c.need, c.what, prof.Name, c.have, strings.Join(why, ", ")))
	}
	return problems, unsure
}

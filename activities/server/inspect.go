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
	problems := checkMinimum(prof.Minimum, inv, len(macs))
	state := "inspected"
	if len(problems) > 0 {
		state = "inspection-mismatch"
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
		return serverapi.InspectServerResult{}, mismatch("hardware does not meet profile %q: %s", prof.Name, strings.Join(problems, "; "))
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
		SSHAuthorizedKeys: prof.SSHAuthorizedKeys, UserData: prof.UserData,
	}, nil
}

func checkMinimum(min profiles.Requirements, inv hardware.Inventory, macs int) []string {
	var problems []string
	if len(inv.CPUs) < min.CPUs {
		problems = append(problems, fmt.Sprintf("%d CPUs, profile needs %d", len(inv.CPUs), min.CPUs))
	}
	if inv.MemoryGiB < min.MemoryGiB {
		problems = append(problems, fmt.Sprintf("%d GiB memory, profile needs %d", inv.MemoryGiB, min.MemoryGiB))
	}
	if len(inv.Drives) < min.Drives {
		problems = append(problems, fmt.Sprintf("%d drives, profile needs %d", len(inv.Drives), min.Drives))
	}
	if macs < min.NICs {
		problems = append(problems, fmt.Sprintf("%d NICs with a MAC, profile needs %d", macs, min.NICs))
	}
	return problems
}

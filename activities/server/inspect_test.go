package server

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Inspection hands the lifecycle what a deploy needs: the BMC's system
// serial, which the agent's DMI serial must match, and the profile's image,
// root-device hints and cloud-init settings.
func TestInspectServerReturnsTheDeploySettings(t *testing.T) {
	r := newKillRig(t, bmcsim.VendorGeneric, false, 0)
	prof := profiles.Default()
	prof.Name = "deploying"
	prof.Image = "debian-12"
	prof.RootDevice = map[string]string{"size": ">= 60"}
	prof.SSHAuthorizedKeys = []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKv2oMjPcLITFgW6Mdmj3zGef2jF3wuncBd/8JOAXvHS ops@example"}
	prof.UserData = "#cloud-config\npackages: [htop]\n"
	cat, err := profiles.NewCatalog(prof)
	require.NoError(t, err)
	r.p.Profiles = cat

	res, err := r.p.InspectServer(t.Context(), serverapi.InspectServerInput{Serial: r.bmc.Serial(), BMC: r.ref, Profile: "deploying", Actor: "test"})
	require.NoError(t, err)
	require.Equal(t, r.bmc.Serial(), res.SystemSerial)
	require.Equal(t, "debian-12", res.Image)
	require.Equal(t, prof.RootDevice, res.RootDevice)
	require.Equal(t, prof.SSHAuthorizedKeys, res.SSHAuthorizedKeys)
	require.Equal(t, prof.UserData, res.UserData)

	res, err = r.p.InspectServer(t.Context(), serverapi.InspectServerInput{Serial: r.bmc.Serial(), BMC: r.ref, Actor: "test"})
	require.NoError(t, err)
	require.Equal(t, profiles.DefaultName, res.Profile)
	require.Empty(t, res.Image, "the built-in profile names no image: the installer runs")
	require.Equal(t, r.bmc.Serial(), res.SystemSerial)
}

// A server registered without a location was held only to some site's BMC
// networks; once racked, inspection (the first step that logs in) holds
// its BMC to its own site's, and parks it without contacting the BMC.
func TestInspectRefusesABMCOutsideItsSite(t *testing.T) {
	r := newKillRig(t, bmcsim.VendorGeneric, false, 0)
	inv := r.p.Inventory.(*inventory.Store)
	ctx := t.Context()
	mgmt := []netip.Prefix{netip.MustParsePrefix("10.7.0.0/16")}
	require.NoError(t, inv.ApplyLayout(ctx, inventory.Layout{
		Sites: []inventory.Site{{Name: "dc7", BMCNetworks: mgmt}},
		Racks: []inventory.Rack{{Site: "dc7", Name: "R01", HeightU: 42}},
	}))
	require.NoError(t, inv.PlaceAsset(ctx, r.bmc.Serial(), inventory.Placement{Site: "dc7", Rack: "R01", Unit: 3, Face: "front", HeightU: 1}, "test"))
	before := r.bmc.Counters().Requests

	_, err := r.p.InspectServer(ctx, serverapi.InspectServerInput{Serial: r.bmc.Serial(), BMC: r.ref, Actor: "test"})
	var appErr *temporal.ApplicationError
	require.ErrorAs(t, err, &appErr)
	require.Equal(t, stepapi.ErrTypeBMCOutsideSite, appErr.Type())
	require.Contains(t, appErr.Message(), "outside the BMC networks of site dc7 (10.7.0.0/16)")
	require.Equal(t, before, r.bmc.Counters().Requests, "the BMC was not contacted")

	// The site's networks are what decides: with the simulator's among
	// them, the same BMC is inspected.
	require.NoError(t, inv.EnsureSite(ctx, inventory.Site{Name: "dc7", BMCNetworks: append(mgmt, netip.MustParsePrefix("127.0.0.0/8"))}))
	_, err = r.p.InspectServer(ctx, serverapi.InspectServerInput{Serial: r.bmc.Serial(), BMC: r.ref, Actor: "test"})
	require.NoError(t, err)
}

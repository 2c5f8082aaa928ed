package server

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
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

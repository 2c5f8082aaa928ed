package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// TestInspectDecidesPerTreeFault inspects a server whose BMC serves one
// tree fault, against a profile its hardware meets, and one it would
// meet only with the part the fault hides. Inspect completes, carrying
// the warnings, when the profile can be judged from what was read;
// otherwise it stops with a non-retryable InventoryIncomplete naming the
// profile, the minimum and the path that answered, and records the asset
// as inspection-incomplete.
func TestInspectDecidesPerTreeFault(t *testing.T) {
	withMinimum := func(name string, req profiles.Requirements) profiles.Profile {
		p := profiles.Default()
		p.Name, p.Minimum = name, req
		return p
	}
	cases := []struct {
		fault string
		// needy is a profile only the hidden part could satisfy; zero
		// when the fault hides nothing a profile requires.
		needy profiles.Requirements
		// wantWarning is part of a warning's path and error the result
		// carries with the default profile, "" for none.
		wantWarning, wantUnsure string
	}{
		{fault: bmcsim.FaultDanglingDrive, needy: profiles.Requirements{Drives: 4},
			wantWarning: "/Drives/", wantUnsure: `cannot tell whether the server has the 4 drives profile "needy" needs: 3 read; /redfish/v1/Systems/Self/Storage/1/Drives/3 answered 404`},
		{fault: bmcsim.FaultDanglingNIC, needy: profiles.Requirements{NICs: 2},
			wantWarning: "/EthernetInterfaces/", wantUnsure: `cannot tell whether the server has the 2 NICs with a MAC profile "needy" needs: 1 read; /redfish/v1/Systems/Self/EthernetInterfaces/NIC.Integrated.1-2-1 answered 404`},
		{fault: bmcsim.FaultDanglingMemory, wantWarning: "/Memory/"},
		{fault: bmcsim.FaultNoSerial, wantWarning: "no SerialNumber"},
		{fault: bmcsim.FaultCountMismatch, wantWarning: "Members@odata.count"},
		{fault: bmcsim.FaultNoStatus},
		{fault: bmcsim.FaultNumbersAsStrings},
	}
	covered := []string{bmcsim.FaultEmptyStorage}
	for _, tc := range cases {
		covered = append(covered, tc.fault)
	}
	require.ElementsMatch(t, bmcsim.TreeFaultNames(), covered, "every fault the simulator serves is decided on")
	for _, tc := range cases {
		t.Run(tc.fault, func(t *testing.T) {
			t.Parallel()
			r := newKillRig(t, bmcsim.VendorGeneric, false, 0)
			cat, err := profiles.NewCatalog(withMinimum("needy", tc.needy))
			require.NoError(t, err)
			r.p.Profiles = cat
			r.bmc.SetFaults(bmcsim.Faults{Tree: []string{tc.fault}})
			in := serverapi.InspectServerInput{Serial: r.bmc.Serial(), BMC: r.ref, Actor: "test"}

			res, err := r.p.InspectServer(t.Context(), in)
			require.NoError(t, err, "the default profile is judged from what was read")
			if tc.wantWarning == "" {
				assert.Empty(t, res.Warnings)
			} else {
				require.NotEmpty(t, res.Warnings)
				found := false
				for _, w := range res.Warnings {
					found = found || strings.Contains(w.Path+" "+w.Error, tc.wantWarning)
				}
				assert.True(t, found, "a warning mentions %q: %+v", tc.wantWarning, res.Warnings)
			}
			if tc.fault == bmcsim.FaultNoSerial {
				assert.Empty(t, res.SystemSerial)
			} else {
				assert.Equal(t, r.bmc.Serial(), res.SystemSerial)
			}
			if tc.wantUnsure == "" {
				return
			}
			in.Profile = "needy"
			_, err = r.p.InspectServer(t.Context(), in)
			requireAppError(t, err, stepapi.ErrTypeInventoryIncomplete, tc.wantUnsure)
			assertAssetState(t, r, "inspection-incomplete")
		})
	}

	t.Run(bmcsim.FaultEmptyStorage, func(t *testing.T) {
		t.Parallel()
		r := newKillRig(t, bmcsim.VendorGeneric, false, 0)
		r.bmc.SetFaults(bmcsim.Faults{Tree: []string{bmcsim.FaultEmptyStorage}})
		_, err := r.p.InspectServer(t.Context(), serverapi.InspectServerInput{Serial: r.bmc.Serial(), BMC: r.ref, Actor: "test"})
		requireAppError(t, err, stepapi.ErrTypeInventoryIncomplete,
			`cannot tell whether the server has the 2 drives profile "default" needs: 0 read; /redfish/v1/Systems/Self/Storage lists no storage controller`)
		assertAssetState(t, r, "inspection-incomplete")
	})

	t.Run("a shortfall no warning explains is a mismatch", func(t *testing.T) {
		t.Parallel()
		r := newKillRig(t, bmcsim.VendorGeneric, false, 0)
		cat, err := profiles.NewCatalog(withMinimum("big", profiles.Requirements{Drives: 8, NICs: 2}))
		require.NoError(t, err)
		r.p.Profiles = cat
		r.bmc.SetFaults(bmcsim.Faults{Tree: []string{bmcsim.FaultDanglingNIC}})
		_, err = r.p.InspectServer(t.Context(), serverapi.InspectServerInput{Serial: r.bmc.Serial(), BMC: r.ref, Profile: "big", Actor: "test"})
		requireAppError(t, err, stepapi.ErrTypeInventoryMismatch, "4 drives, profile needs 8")
		assert.ErrorContains(t, err, `cannot tell whether the server has the 2 NICs with a MAC profile "big" needs`, "what cannot be told is said too")
		assertAssetState(t, r, "inspection-mismatch")
	})
}

func requireAppError(t *testing.T, err error, typ, msg string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%T: %v", err, err)
	assert.Equal(t, typ, appErr.Type())
	assert.True(t, appErr.NonRetryable(), "a human decides: retrying reads the same tree")
	assert.Contains(t, appErr.Message(), msg)
}

// assertAssetState checks what inspection recorded, warnings included.
func assertAssetState(t *testing.T, r *killRig, state string) {
	t.Helper()
	store, ok := r.p.Inventory.(interface {
		GetAsset(ctx context.Context, serial string) (inventory.Asset, error)
	})
	require.True(t, ok)
	a, err := store.GetAsset(t.Context(), r.bmc.Serial())
	require.NoError(t, err)
	assert.Equal(t, state, a.State)
	var hw struct {
		Warnings []json.RawMessage `json:"warnings"`
	}
	require.NoError(t, json.Unmarshal(a.Hardware, &hw))
	assert.NotEmpty(t, hw.Warnings, "the asset's hardware keeps the warnings")
}

package bmcsim

import (
	"net/http"
	"path/filepath"
	"sort"
	"testing"

	"github.com/bmc-toolbox/bmclib/v2/bmc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSharedVendorTrees runs the bmclib suite against each recorded vendor
// tree in ../shared. Where the vendor (or the recording) lacks a feature,
// the client must fail cleanly rather than the simulator misbehave.
func TestSharedVendorTrees(t *testing.T) {
	root := sharedMockups(t)
	cases := []struct {
		tree, vendor string
		bios         bool // bmclib reads BIOS only for System IDs it knows
		media        bool
		raidDrives   int // free drives a RAID0 can be made of, 0 when no Volumes
		knownIDs     bool
		rename       bool
	}{
		{tree: "dmtf-public-rackmount1", vendor: VendorGeneric},
		{tree: "dmtf-public-localstorage", vendor: VendorGeneric, raidDrives: -1},
		{tree: "dmtf-public-rackmount1", vendor: VendorGeneric, bios: true, knownIDs: true, rename: true},
		{tree: "dmtf-public-localstorage", vendor: VendorGeneric, bios: true, raidDrives: -1, knownIDs: true, rename: true},
		{tree: "hpe-ilo5-dl360-gen10plus", vendor: VendorHPE, bios: true, media: true, raidDrives: 2, knownIDs: true},
		{tree: "dell-idrac9-composite", vendor: VendorDell, bios: true, media: true, raidDrives: 1, knownIDs: true},
		{tree: "supermicro-x12-composite", vendor: VendorSupermicro, bios: true, knownIDs: true},
	}
	for _, tc := range cases {
		name := tc.tree
		if tc.rename {
			name += "/renamed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := quickConfig("")
			cfg.Mockup = filepath.Join(root, tc.tree)
			cfg.RenameIDs = tc.rename
			b := startFleet(t, cfg).BMCs()[0]
			assert.Equal(t, tc.vendor, b.Vendor(), "vendor quirks detected from the tree")
			cl := connect(t, b)
			ctx := ctxT(t)

			// Power and boot override work on every Redfish service.
			state, err := cl.GetPowerState(ctx)
			require.NoError(t, err)
			assert.Equal(t, "Off", state)
			_, err = cl.SetBootDevice(ctx, "pxe", false, true)
			require.NoError(t, err)
			ov, err := cl.GetBootDeviceOverride(ctx)
			require.NoError(t, err)
			assert.Equal(t, bmc.BootDeviceTypePXE, ov.Device)
			_, err = cl.SetPowerState(ctx, "on")
			require.NoError(t, err)
			waitFor(t, "POST", func() bool { return b.PowerState() == PowerOn })
			assert.Equal(t, "Disabled", b.State().BootOverride.Enabled, "Once override used up")
			_, err = cl.SetPowerState(ctx, "off")
			require.NoError(t, err)
			assert.Equal(t, PowerOff, b.PowerState())

			attrs, err := cl.GetBiosConfiguration(ctx)
			require.NoError(t, err)
			if !tc.bios {
				assert.Empty(t, attrs, "bmclib ignores BIOS of a system whose ID it does not know")
			} else {
				require.NotEmpty(t, attrs)
				var names []string
				for k, v := range b.State().BIOS {
					if _, ok := v.(string); ok {
						names = append(names, k)
					}
				}
				sort.Strings(names)
				attr := names[0]
				p := connectProvider(t, b)
				require.NoError(t, p.SetBiosConfiguration(ctx, map[string]string{attr: "SimulatorValue"}))
				assert.NotEqual(t, "SimulatorValue", b.State().BIOS[attr])
				_, err = p.PowerSet(ctx, "on")
				require.NoError(t, err)
				got, err := p.GetBiosConfiguration(ctx)
				require.NoError(t, err)
				assert.Equal(t, "SimulatorValue", got[attr], "applied at the reset")
			}

			_, err = cl.SetVirtualMedia(ctx, "CD", "http://127.0.0.1/boot.iso")
			if tc.media {
				require.NoError(t, err)
				assert.Equal(t, 1, b.Counters().MediaInserts)
			} else {
				require.Error(t, err, "the recorded tree has no usable media slot")
				assert.Equal(t, 0, b.Counters().MediaInserts)
			}

			dev, err := cl.Inventory(ctx)
			require.NoError(t, err)
			if tc.knownIDs {
				assert.Equal(t, b.Serial(), dev.Serial, "the simulator's serial replaces the recorded one")
			}
			if tc.rename || tc.vendor == VendorHPE {
				// The Dell and Supermicro recordings have no processors.
				assert.NotEmpty(t, dev.CPUs, "inventory reads the system's parts")
			}
			if tc.rename {
				assert.Equal(t, "/redfish/v1/Systems/1", b.m.system)
			}

			c := newRawClient(t, b)
			st := b.m.storages
			switch {
			case tc.raidDrives > 0:
				var drives []any
				for _, d := range st[0].drives[:tc.raidDrives] {
					drives = append(drives, map[string]any{"@odata.id": d})
				}
				r := c.do("POST", st[0].volumes, map[string]any{"RAIDType": "RAID0", "Links": map[string]any{"Drives": drives}})
				require.Contains(t, []int{http.StatusCreated, http.StatusAccepted}, r.status, r.body)
				waitFor(t, "volume", func() bool { return len(memberLinks(c.do("GET", st[0].volumes, nil).body)) == 1 })
			case tc.raidDrives < 0:
				// The DMTF tree ships three volumes; deleting one frees its drives.
				vols := memberLinks(c.do("GET", st[0].volumes, nil).body)
				require.Len(t, vols, 3)
				freed := anySlice(mapOf(c.do("GET", vols[0], nil).body["Links"])["Drives"])
				require.NotEmpty(t, freed)
				assert.Equal(t, http.StatusNoContent, c.do("DELETE", vols[0], nil).status)
				r := c.do("POST", st[0].volumes, map[string]any{"RAIDType": "RAID0", "Links": map[string]any{"Drives": freed[:1]}})
				assert.Equal(t, http.StatusCreated, r.status, r.body)
				assert.Len(t, memberLinks(c.do("GET", st[0].volumes, nil).body), 3)
			default:
				for _, s := range st {
					assert.Empty(t, s.volumes, "no Volumes collection to create in")
				}
			}
		})
	}
}

func TestMockupErrors(t *testing.T) {
	_, err := Start(Config{Count: 1, Mockup: t.TempDir()})
	assert.Error(t, err, "a directory without redfish/v1 is not a mockup")
	_, err = Start(Config{Count: 1, Mockup: "/nonexistent/tree"})
	assert.Error(t, err)
}

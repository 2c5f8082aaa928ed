package hardware_test

import (
	"testing"

	"github.com/metalflow/metalflow/hardware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInventory checks what Inspect records against what the fleet
// manifest says the server is.
func TestInventory(t *testing.T) {
	for _, tc := range vendorCases() {
		t.Run(tc.vendor, func(t *testing.T) {
			t.Parallel() // the flavours wait on simulated delays, not on the CPU
			f, b := quickFleet(t, tc.vendor)
			m := dial(t, endpointOf(f, b))
			inv, err := m.Inventory(ctxT(t))
			require.NoError(t, err)
			entry := b.ManifestEntry()
			assert.Equal(t, entry.Serial, inv.Serial)
			assert.NotEmpty(t, inv.Vendor)
			assert.NotEmpty(t, inv.Model)
			var macs []string
			for _, n := range inv.NICs {
				macs = append(macs, n.MAC)
			}
			assert.ElementsMatch(t, entry.MACs, macs)
			assert.Len(t, inv.Drives, 4)
			for _, d := range inv.Drives {
				assert.Positive(t, d.CapacityBytes, d.ID)
			}
			assert.Equal(t, 256, inv.MemoryGiB)
			assert.Len(t, inv.CPUs, 2)
			assert.Equal(t, 56, inv.TotalCores)
			assert.Equal(t, 112, inv.TotalThreads)
			assert.NotEmpty(t, inv.BIOSVersion)
			assert.NotEmpty(t, inv.BMCFirmware)
			assert.Len(t, inv.Firmware, 2, "BIOS and BMC in the firmware inventory")
		})
	}
}

// TestRAID lists storage, builds the default profile's RAID-1 root volume
// over two drives, sees it on the controller, deletes it, and securely
// erases a free drive where the flavour offers Drive.SecureErase.
func TestRAID(t *testing.T) {
	for _, tc := range vendorCases() {
		t.Run(tc.vendor, func(t *testing.T) {
			t.Parallel() // the flavours wait on simulated delays, not on the CPU
			f, b := quickFleet(t, tc.vendor)
			m := dial(t, endpointOf(f, b))
			ctx := ctxT(t)

			ctls, err := m.Storage(ctx)
			require.NoError(t, err)
			require.Len(t, ctls, 1)
			c := ctls[0]
			require.Len(t, c.Drives, 4)
			assert.Empty(t, c.Volumes)
			assert.Contains(t, c.SupportedRAID, "RAID1")

			pair := []string{c.Drives[0].ID, c.Drives[1].ID}
			v, err := m.CreateVolume(ctx, hardware.VolumeRequest{RAIDType: "RAID1", DriveIDs: pair, Name: "root"})
			require.NoError(t, err)
			assert.Equal(t, "RAID1", v.RAIDType)
			assert.ElementsMatch(t, pair, v.DriveIDs)
			assert.Equal(t, c.Drives[0].CapacityBytes, v.CapacityBytes, "a mirror holds one drive")
			require.NotEmpty(t, v.ID)

			ctls, err = m.Storage(ctx)
			require.NoError(t, err)
			require.Len(t, ctls[0].Volumes, 1)
			assert.Equal(t, v.ID, ctls[0].Volumes[0].ID)
			st := b.State()
			require.Len(t, st.Volumes, 1, "the BMC holds the volume")
			assert.Equal(t, "RAID1", st.Volumes[0].RAIDType)
			assert.False(t, st.Volumes[0].Building)

			// Drives already in a volume: the controller says no.
			_, err = m.CreateVolume(ctx, hardware.VolumeRequest{ControllerID: c.ID, RAIDType: "RAID1", DriveIDs: pair})
			requireKind(t, err, hardware.Rejected)
			// RAID5 needs three drives.
			_, err = m.CreateVolume(ctx, hardware.VolumeRequest{RAIDType: "5", DriveIDs: []string{c.Drives[2].ID, c.Drives[3].ID}})
			requireKind(t, err, hardware.Rejected)
			_, err = m.CreateVolume(ctx, hardware.VolumeRequest{RAIDType: "RAID1", DriveIDs: []string{"no-such-drive", c.Drives[3].ID}})
			requireKind(t, err, hardware.Rejected)

			if tc.secureErase {
				requireKind(t, m.SecureErase(ctx, pair[0]), hardware.Rejected) // a volume uses it
			}

			require.NoError(t, m.DeleteVolume(ctx, v.ID))
			ctls, err = m.Storage(ctx)
			require.NoError(t, err)
			assert.Empty(t, ctls[0].Volumes)
			assert.Empty(t, b.State().Volumes)
			requireKind(t, m.DeleteVolume(ctx, v.ID), hardware.Rejected)

			if !tc.secureErase {
				requireKind(t, m.SecureErase(ctx, c.Drives[2].ID), hardware.Unsupported)
				return
			}
			require.NoError(t, m.SecureErase(ctx, c.Drives[2].ID))
			assert.Equal(t, 1, b.Counters().DrivesErased, "erased once the call returns")
			requireKind(t, m.SecureErase(ctx, "no-such-drive"), hardware.Rejected)
		})
	}
}

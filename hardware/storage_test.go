package hardware_test

import (
	"context"
	"testing"
	"time"

	"github.com/metalflow/metalflow/bmcsim"
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

			// The same request again is the same volume (a retry whose
			// first answer was lost); another level on its drives is refused.
			again, err := m.CreateVolume(ctx, hardware.VolumeRequest{ControllerID: c.ID, RAIDType: "RAID1", DriveIDs: pair})
			require.NoError(t, err)
			assert.Equal(t, v.ID, again.ID)
			assert.Equal(t, 1, b.Counters().VolumesCreated)
			_, err = m.CreateVolume(ctx, hardware.VolumeRequest{ControllerID: c.ID, RAIDType: "RAID0", DriveIDs: pair})
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

// TestCreateVolumeCutShort: a create whose caller died once the BMC had
// taken the request (a killed worker) is followed by one that waits for
// that volume instead of failing on the busy drives where the BMC builds
// it in a task, or finds it where it was built at once; a third builds
// nothing.
func TestCreateVolumeCutShort(t *testing.T) {
	for _, tc := range vendorCases() {
		t.Run(tc.vendor, func(t *testing.T) {
			t.Parallel()
			f, b := quickFleet(t, tc.vendor, func(c *bmcsim.Config) { c.TaskDuration = 2 * time.Second })
			m := dial(t, endpointOf(f, b))
			ctls, err := m.Storage(ctxT(t))
			require.NoError(t, err)
			req := hardware.VolumeRequest{RAIDType: "RAID1", DriveIDs: []string{ctls[0].Drives[0].ID, ctls[0].Drives[1].ID}}

			first, cancel := context.WithCancel(ctxT(t))
			done := make(chan error, 1)
			go func() { _, err := m.CreateVolume(first, req); done <- err }()
			eventually(t, "the BMC holds the volume", func() bool { return len(b.State().Volumes) == 1 })
			cancel()
			<-done // cut short where the BMC builds in a task, done where it does not

			again := dial(t, endpointOf(f, b))
			v, err := again.CreateVolume(ctxT(t), req)
			require.NoError(t, err)
			assert.ElementsMatch(t, req.DriveIDs, v.DriveIDs)
			v2, err := again.CreateVolume(ctxT(t), req)
			require.NoError(t, err)
			assert.Equal(t, v.ID, v2.ID)
			assert.Equal(t, 1, b.Counters().VolumesCreated, "one volume built")
			assert.Len(t, b.State().Volumes, 1)
		})
	}
}

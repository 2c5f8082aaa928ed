package hardware_test

import (
	"testing"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/hardware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOperatorMachine covers what only the operator tool asks for: the
// virtual CD and boot overrides outside the lifecycle's devices.
func TestOperatorMachine(t *testing.T) {
	for _, tc := range vendorCases() {
		t.Run(tc.vendor, func(t *testing.T) {
			t.Parallel() // the flavours wait on simulated delays, not on the CPU
			f, b := quickFleet(t, tc.vendor)
			m, ok := dial(t, endpointOf(f, b)).(hardware.OperatorMachine)
			require.True(t, ok, "Dial's Machine offers the operator commands")
			ctx := ctxT(t)

			require.NoError(t, m.InsertMedia(ctx, "http://127.0.0.1/os.iso"))
			assert.Equal(t, 1, b.Counters().MediaInserts)
			require.NoError(t, m.EjectMedia(ctx))
			assert.Equal(t, 1, b.Counters().MediaEjects)

			require.NoError(t, m.SetBootDeviceMode(ctx, hardware.BootCD, false, false))
			assert.Equal(t, bmcsim.BootOverride{Target: "Cd", Enabled: "Continuous", Mode: "Legacy"}, b.State().BootOverride)
			require.NoError(t, m.SetBootDeviceMode(ctx, hardware.BootBIOSSetup, true, true))
			dev, once, err := m.BootOverride(ctx)
			require.NoError(t, err)
			assert.Equal(t, "biossetup", dev, "named as Redfish does when metalflow has no name")
			assert.True(t, once)
			requireKind(t, m.SetBootDevice(ctx, "floppy", true), hardware.Rejected)

			// The lifecycle's overrides keep the mode the system boots in:
			// a legacy BIOS server netboots and boots its disk in legacy
			// mode, a UEFI one in UEFI.
			require.NoError(t, m.SetBootDeviceMode(ctx, hardware.BootDisk, false, false))
			require.NoError(t, m.SetBootDevice(ctx, hardware.BootPXE, true))
			assert.Equal(t, "Legacy", b.State().BootOverride.Mode, "a legacy server stays legacy")
			require.NoError(t, m.SetBootDeviceMode(ctx, hardware.BootDisk, false, true))
			require.NoError(t, m.SetBootDevice(ctx, hardware.BootPXE, true))
			assert.Equal(t, "UEFI", b.State().BootOverride.Mode)
		})
	}
}

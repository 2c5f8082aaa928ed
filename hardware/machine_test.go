package hardware_test

import (
	"strings"
	"testing"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/hardware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// vendorCase is what each flavour's BIOS calls the attribute the test flips.
type vendorCase struct {
	vendor        string
	attr, to      string
	secondPatchOK bool // iDRAC refuses a second change while its job waits
	secureErase   bool // the flavour's drives offer Drive.SecureErase
}

func vendorCases() []vendorCase {
	return []vendorCase{
		{vendor: bmcsim.VendorDell, attr: "ProcVirtualization", to: "Disabled", secureErase: true},
		{vendor: bmcsim.VendorHPE, attr: "ProcVirtualization", to: "Disabled", secondPatchOK: true, secureErase: true},
		{vendor: bmcsim.VendorSupermicro, attr: "IntelVirtualizationTechnology", to: "Disable", secondPatchOK: true},
		{vendor: bmcsim.VendorGeneric, attr: "Virtualization", to: "Disabled", secondPatchOK: true, secureErase: true},
	}
}

// TestPowerBootBIOS drives each flavour through what ConfigureBIOS and
// InstallOS do: stage BIOS, one-time PXE, power on, and check on the BMC
// that the settings applied and the override was used up.
func TestPowerBootBIOS(t *testing.T) {
	for _, tc := range vendorCases() {
		t.Run(tc.vendor, func(t *testing.T) {
			t.Parallel() // the flavours wait on simulated delays, not on the CPU
			f, b := quickFleet(t, tc.vendor)
			m := dial(t, endpointOf(f, b))
			ctx := ctxT(t)

			state, err := m.PowerState(ctx)
			require.NoError(t, err)
			assert.Equal(t, hardware.PowerOff, state)

			before, err := m.BIOS(ctx)
			require.NoError(t, err)
			from := before[tc.attr]
			require.NotEmpty(t, from, "attribute %s present", tc.attr)
			require.NotEqual(t, tc.to, from)

			require.NoError(t, m.SetBIOS(ctx, map[string]string{tc.attr: tc.to}))
			pending, err := m.PendingBIOS(ctx)
			require.NoError(t, err)
			assert.Equal(t, map[string]string{tc.attr: tc.to}, pending, "only the change is pending")
			now, err := m.BIOS(ctx)
			require.NoError(t, err)
			assert.Equal(t, from, now[tc.attr], "not applied before a reset")

			// Staging the same change again (an activity run twice) is a no-op,
			// even where a pending job refuses any further change.
			require.NoError(t, m.SetBIOS(ctx, map[string]string{tc.attr: tc.to}))
			pending, err = m.PendingBIOS(ctx)
			require.NoError(t, err)
			assert.Equal(t, map[string]string{tc.attr: tc.to}, pending)
			requireKind(t, m.SetBIOS(ctx, map[string]string{"NoSuchAttribute": "x"}), hardware.Rejected)

			// Taking the change back, then staging it again.
			err = m.SetBIOS(ctx, map[string]string{tc.attr: from})
			if tc.secondPatchOK {
				require.NoError(t, err)
				pending, err = m.PendingBIOS(ctx)
				require.NoError(t, err)
				assert.Empty(t, pending, "change taken back")
				require.NoError(t, m.SetBIOS(ctx, map[string]string{tc.attr: tc.to}))
			} else {
				requireKind(t, err, hardware.Rejected)
			}

			require.NoError(t, m.SetBootDevice(ctx, hardware.BootPXE, true))
			dev, once, err := m.BootOverride(ctx)
			require.NoError(t, err)
			assert.Equal(t, hardware.BootPXE, dev)
			assert.True(t, once)

			require.NoError(t, m.SetPower(ctx, hardware.PowerOn))
			eventually(t, "power on", func() bool { s, err := m.PowerState(ctx); return err == nil && s == hardware.PowerOn })
			eventually(t, "override used up", func() bool { d, _, err := m.BootOverride(ctx); return err == nil && d == "" })
			assert.Equal(t, "pxe", strings.ToLower(b.Host().BootSource), "the host netbooted")

			now, err = m.BIOS(ctx)
			require.NoError(t, err)
			assert.Equal(t, tc.to, now[tc.attr], "applied at the reset")
			pending, err = m.PendingBIOS(ctx)
			require.NoError(t, err)
			assert.Empty(t, pending)

			// Defaults staged, applied at the next reset.
			require.NoError(t, m.ResetBIOS(ctx))
			pending, err = m.PendingBIOS(ctx)
			require.NoError(t, err)
			assert.Equal(t, map[string]string{tc.attr: from}, pending)
			require.NoError(t, m.SetPower(ctx, hardware.PowerCycle))
			eventually(t, "defaults applied", func() bool { a, err := m.BIOS(ctx); return err == nil && a[tc.attr] == from })
			eventually(t, "on after cycle", func() bool { s, err := m.PowerState(ctx); return err == nil && s == hardware.PowerOn })

			// A persistent override survives a boot.
			require.NoError(t, m.SetBootDevice(ctx, hardware.BootDisk, false))
			require.NoError(t, m.SetPower(ctx, hardware.PowerCycle))
			eventually(t, "on after cycle", func() bool { s, err := m.PowerState(ctx); return err == nil && s == hardware.PowerOn })
			dev, once, err = m.BootOverride(ctx)
			require.NoError(t, err)
			assert.Equal(t, hardware.BootDisk, dev)
			assert.False(t, once)

			require.NoError(t, m.SetPower(ctx, hardware.PowerSoft))
			eventually(t, "graceful shutdown", func() bool { s, err := m.PowerState(ctx); return err == nil && s == hardware.PowerOff })
			requireKind(t, m.SetPower(ctx, hardware.PowerCycle), hardware.Rejected)
			require.NoError(t, m.SetPower(ctx, hardware.PowerOn))
			require.NoError(t, m.SetPower(ctx, hardware.PowerOff))
			state, err = m.PowerState(ctx)
			require.NoError(t, err)
			assert.Equal(t, hardware.PowerOff, state, "forced off at once")
			assert.Equal(t, "Off", b.PowerState())
		})
	}
}

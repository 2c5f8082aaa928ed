package server

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

type oneCredential struct{ c credentials.Credential }

func (o oneCredential) Get(context.Context, string) (credentials.Credential, error) { return o.c, nil }

// TestStartInstallBootsOnceWhereverItDies: the host (left running by the
// BIOS step) is turned into the installer exactly once however the first
// run of the activity was cut short, including between powering it off
// and recording the cycle, and between recording it and powering on.
func TestStartInstallBootsOnceWhereverItDies(t *testing.T) {
	// A clean run makes four BMC calls: read power, off, PXE once, on.
	for dieAfter := 1; dieAfter <= 4; dieAfter++ {
		// The BIOS step leaves the host running.
		r := newKillRig(t, bmcsim.VendorGeneric, true, dieAfter)
		b, p, ctx := r.bmc, r.p, t.Context()
		in := serverapi.StartInstallInput{Serial: b.Serial(), BMC: r.ref, Attempt: 1,
			MACs: b.MACs(), TTL: time.Hour}
		require.Error(t, p.StartInstall(ctx, in), "dies after call %d", dieAfter)
		require.NoError(t, p.StartInstall(ctx, in), "the retry after call %d", dieAfter)
		require.NoError(t, p.StartInstall(ctx, in), "a third run changes nothing")

		require.Eventually(t, func() bool { return b.PowerState() == bmcsim.PowerOn }, 10*time.Second, 10*time.Millisecond)
		st := b.State()
		require.Equal(t, 2, st.Counters.PowerOns, "died after call %d: the setup's power-on and one into the installer", dieAfter)
		require.Equal(t, "Pxe", st.Host.BootSource, "died after call %d: the host booted the network", dieAfter)
		require.Equal(t, "Disabled", st.BootOverride.Enabled, "died after call %d: the one-time override was used", dieAfter)
	}
}

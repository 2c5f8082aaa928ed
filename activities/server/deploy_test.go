package server

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// deployInput is install attempt 1 of the rig's server writing debian-12,
// which the rig's catalog holds.
func deployInput(t *testing.T, r *killRig) serverapi.StartInstallInput {
	t.Helper()
	_, err := r.inv(t).CreateImage(t.Context(), inventory.Image{Name: "debian-12", Source: "upload",
		SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Format: "raw", OSFamily: "debian"})
	require.NoError(t, err)
	return serverapi.StartInstallInput{Serial: r.bmc.Serial(), BMC: r.ref, Attempt: 1, MACs: r.bmc.MACs(), TTL: time.Hour,
		Deploy: &serverapi.DeployPlan{Image: "debian-12", Hostname: "sim0001", RootDevice: map[string]string{"size": ">= 10"}}}
}

func (r *killRig) inv(t *testing.T) *inventory.Store {
	t.Helper()
	inv, ok := r.p.Inventory.(*inventory.Store)
	require.True(t, ok)
	return inv
}

// An install with a plan records it, pending, with the image its token may
// fetch, and netboots the server as an installer's does; the lifecycle's
// decision is recorded once however often it is sent.
func TestStartInstallRecordsTheDeployPlan(t *testing.T) {
	r := newKillRig(t, bmcsim.VendorGeneric, false, 0)
	in := deployInput(t, r)
	ctx := t.Context()
	require.NoError(t, r.p.StartInstall(ctx, in))
	require.NoError(t, r.p.StartInstall(ctx, in), "a retried install")
	inv := r.inv(t)
	boot, err := inv.ActiveBoot(ctx, in.Serial)
	require.NoError(t, err)
	require.JSONEq(t, `{"image":"debian-12","hostname":"sim0001","rootDevice":{"size":">= 10"}}`, string(boot.DeployPlan))
	require.Equal(t, inventory.DeployPending, boot.Decision)
	grant, err := inv.BootImageByToken(ctx, boot.Token)
	require.NoError(t, err)
	require.Equal(t, "debian-12", grant.Image, "the agent's token fetches the image")
	require.Eventually(t, func() bool { return r.bmc.PowerState() == bmcsim.PowerOn }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, r.bmc.State().Counters.PowerOns)

	decide := serverapi.DecideDeployInput{Serial: in.Serial, Attempt: 1, Release: true}
	require.NoError(t, r.p.DecideDeploy(ctx, decide))
	require.NoError(t, r.p.DecideDeploy(ctx, decide))
	boot, err = inv.ActiveBoot(ctx, in.Serial)
	require.NoError(t, err)
	require.Equal(t, inventory.DeployReleased, boot.Decision)

	err = r.p.DecideDeploy(ctx, serverapi.DecideDeployInput{Serial: in.Serial, Attempt: 7, Release: false, Reason: "x"})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, stepapi.ErrTypeNotFound, ae.Type())
	require.True(t, ae.NonRetryable(), "no retry makes an attempt appear")
}

// An install naming an image the catalog lost is a verdict, not an outage.
func TestStartInstallRefusesAnUnknownImage(t *testing.T) {
	r := newKillRig(t, bmcsim.VendorGeneric, false, 0)
	in := deployInput(t, r)
	in.Deploy.Image = "ubuntu-24.04"
	err := r.p.StartInstall(t.Context(), in)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.True(t, ae.NonRetryable())
	require.Contains(t, ae.Error(), "ubuntu-24.04")
	require.Zero(t, r.bmc.State().Counters.PowerOns, "a server with nothing to install is not netbooted")
}

// TestBootFromDiskBootsOnceWhereverItDies: the server the agent wrote is
// set to boot its disk for good and powered on exactly once however the
// first run of the activity was cut short, whether the agent had powered
// it off already or it was still on.
func TestBootFromDiskBootsOnceWhereverItDies(t *testing.T) {
	// A clean run reads the power, turns a running server off, sets the
	// disk and powers on: three BMC calls from off, four from on.
	for _, on := range []bool{false, true} {
		calls := 3
		if on {
			calls = 4
		}
		for dieAfter := 1; dieAfter <= calls; dieAfter++ {
			r := newKillRig(t, bmcsim.VendorGeneric, on, dieAfter)
			b, p, ctx := r.bmc, r.p, t.Context()
			_, err := r.inv(t).IssueBoot(ctx, b.Serial(), 1, b.MACs(), time.Hour)
			require.NoError(t, err)
			before := b.State().Counters.PowerOns
			in := serverapi.BootFromDiskInput{Serial: b.Serial(), BMC: r.ref}
			require.Error(t, p.BootFromDisk(ctx, in), "on %v: dies after call %d", on, dieAfter)
			require.NoError(t, p.BootFromDisk(ctx, in), "on %v: the retry after call %d", on, dieAfter)
			require.NoError(t, p.BootFromDisk(ctx, in), "on %v: a third run changes nothing", on)

			require.Eventually(t, func() bool { return b.PowerState() == bmcsim.PowerOn }, 10*time.Second, 10*time.Millisecond)
			st := b.State()
			require.Equal(t, before+1, st.Counters.PowerOns, "on %v, died after call %d: one power-on into the disk", on, dieAfter)
			require.Equal(t, "Hdd", st.Host.BootSource, "on %v, died after call %d", on, dieAfter)
			require.Equal(t, bmcsim.BootOverride{Target: "Hdd", Enabled: "Continuous", Mode: st.BootOverride.Mode}, st.BootOverride,
				"on %v, died after call %d: the disk for good", on, dieAfter)
		}
	}
}

// Without an install attempt there is no written disk to boot.
func TestBootFromDiskNeedsAnAttempt(t *testing.T) {
	r := newKillRig(t, bmcsim.VendorGeneric, false, 0)
	err := r.p.BootFromDisk(t.Context(), serverapi.BootFromDiskInput{Serial: r.bmc.Serial(), BMC: r.ref})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "%v", err)
	require.Equal(t, stepapi.ErrTypeNotFound, ae.Type())
	require.Zero(t, r.bmc.State().Counters.PowerOns)
}

package activities

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/inventory"
)

type oneCredential struct{ c credentials.Credential }

func (o oneCredential) Put(context.Context, string, credentials.Credential) (string, error) {
	return "cred-1", nil
}

func (o oneCredential) Get(context.Context, string) (credentials.Credential, error) { return o.c, nil }

// dyingMachine stands for a worker killed with kill -9 right after its
// n-th BMC call: the BMC did what it was asked, the activity never
// learned it, and Temporal runs the activity again.
type dyingMachine struct {
	hardware.Machine
	calls    *int
	dieAfter int
}

func (d dyingMachine) after(err error) error {
	*d.calls++
	if err == nil && *d.calls == d.dieAfter {
		return errors.New("worker killed")
	}
	return err
}

func (d dyingMachine) PowerState(ctx context.Context) (string, error) {
	s, err := d.Machine.PowerState(ctx)
	return s, d.after(err)
}

func (d dyingMachine) SetPower(ctx context.Context, action string) error {
	return d.after(d.Machine.SetPower(ctx, action))
}

func (d dyingMachine) SetBootDevice(ctx context.Context, device string, once bool) error {
	return d.after(d.Machine.SetBootDevice(ctx, device, once))
}

// TestStartInstallBootsOnceWhereverItDies: the host (left running by the
// BIOS step) is turned into the installer exactly once however the first
// run of the activity was cut short, including between powering it off
// and recording the cycle, and between recording it and powering on.
func TestStartInstallBootsOnceWhereverItDies(t *testing.T) {
	// A clean run makes four BMC calls: read power, off, PXE once, on.
	for dieAfter := 1; dieAfter <= 4; dieAfter++ {
		f, err := bmcsim.Start(bmcsim.Config{Count: 1, InsecureHTTP: true,
			PostDelay: 50 * time.Millisecond, ShutdownDelay: 50 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = f.Close() })
		b := f.BMCs()[0]
		user, pass := b.Credentials()
		ctx := t.Context()
		m, err := hardware.Dial(ctx, hardware.Endpoint{Address: b.Address(), Username: user, Password: pass})
		require.NoError(t, err)
		require.NoError(t, m.SetPower(ctx, hardware.PowerOn))
		require.NoError(t, m.Close(ctx))
		require.Eventually(t, func() bool { return b.PowerState() == bmcsim.PowerOn }, 10*time.Second, 10*time.Millisecond)

		inv, err := inventory.Open(ctx, inventory.DialectSQLite, filepath.Join(t.TempDir(), "inv.db"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = inv.Close() })
		_, err = inv.RegisterAsset(ctx, inventory.AssetRecord{Serial: "SN-I"}, "test")
		require.NoError(t, err)
		calls := 0
		p := &Provisioning{Inventory: inv, Credentials: oneCredential{credentials.Credential{Username: user, Password: pass}},
			Dial: func(ctx context.Context, ep hardware.Endpoint) (hardware.Machine, error) {
				m, err := hardware.Dial(ctx, ep)
				if err != nil {
					return nil, err
				}
				return dyingMachine{Machine: m, calls: &calls, dieAfter: dieAfter}, nil
			}}
		in := StartInstallInput{Serial: "SN-I", BMC: BMCRef{Address: b.Address(), CredentialRef: "cred-1"}, Attempt: 1,
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

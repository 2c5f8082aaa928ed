package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// killableMachine counts the BMC calls of one activity run and, as a
// worker killed with kill -9 right after its dieAfter-th call, makes that
// call (which the BMC carried out) and every later one fail: the run
// learns nothing more and does nothing more. dieAfter 0 never dies.
type killableMachine struct {
	hardware.Machine
	calls    int
	dieAfter int
}

func (k *killableMachine) call(do func() error) error {
	if k.dieAfter > 0 && k.calls >= k.dieAfter {
		return errors.New("worker killed")
	}
	k.calls++
	err := do()
	if k.calls == k.dieAfter {
		return errors.New("worker killed")
	}
	return err
}

func (k *killableMachine) PowerState(ctx context.Context) (s string, err error) {
	err = k.call(func() error { s, err = k.Machine.PowerState(ctx); return err })
	return s, err
}

func (k *killableMachine) SetPower(ctx context.Context, action string) error {
	return k.call(func() error { return k.Machine.SetPower(ctx, action) })
}

func (k *killableMachine) SetBootDevice(ctx context.Context, device string, once bool) error {
	return k.call(func() error { return k.Machine.SetBootDevice(ctx, device, once) })
}

func (k *killableMachine) BIOS(ctx context.Context) (attrs map[string]string, err error) {
	err = k.call(func() error { attrs, err = k.Machine.BIOS(ctx); return err })
	return attrs, err
}

func (k *killableMachine) PendingBIOS(ctx context.Context) (attrs map[string]string, err error) {
	err = k.call(func() error { attrs, err = k.Machine.PendingBIOS(ctx); return err })
	return attrs, err
}

func (k *killableMachine) SetBIOS(ctx context.Context, attrs map[string]string) error {
	return k.call(func() error { return k.Machine.SetBIOS(ctx, attrs) })
}

func (k *killableMachine) ResetBIOS(ctx context.Context) error {
	return k.call(func() error { return k.Machine.ResetBIOS(ctx) })
}

func (k *killableMachine) Storage(ctx context.Context) (cs []hardware.StorageController, err error) {
	err = k.call(func() error { cs, err = k.Machine.Storage(ctx); return err })
	return cs, err
}

func (k *killableMachine) CreateVolume(ctx context.Context, req hardware.VolumeRequest) (v hardware.Volume, err error) {
	err = k.call(func() error { v, err = k.Machine.CreateVolume(ctx, req); return err })
	return v, err
}

func (k *killableMachine) DeleteVolume(ctx context.Context, volumeID string) error {
	return k.call(func() error { return k.Machine.DeleteVolume(ctx, volumeID) })
}

// killRig is one simulated server, its inventory, and activities whose
// first run is the one killed.
type killRig struct {
	bmc   *bmcsim.BMC
	p     *Provisioning
	first *killableMachine // the first run's machine, once dialled
	ref   serverapi.BMCRef
}

func newKillRig(t *testing.T, vendor string, poweredOn bool, dieAfter int) *killRig {
	t.Helper()
	f, err := bmcsim.Start(bmcsim.Config{Count: 1, Vendor: vendor, InsecureHTTP: true,
		PostDelay: 50 * time.Millisecond, ShutdownDelay: 50 * time.Millisecond, TaskDuration: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	b := f.BMCs()[0]
	user, pass := b.Credentials()
	ctx := t.Context()
	if poweredOn {
		m, err := hardware.Dial(ctx, hardware.Endpoint{Address: b.Address(), Username: user, Password: pass})
		require.NoError(t, err)
		require.NoError(t, m.SetPower(ctx, hardware.PowerOn))
		require.NoError(t, m.Close(ctx))
		require.Eventually(t, func() bool { return b.PowerState() == bmcsim.PowerOn }, 10*time.Second, 10*time.Millisecond)
	}
	inv, err := inventory.Open(ctx, inventory.DialectSQLite, filepath.Join(t.TempDir(), "inv.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = inv.Close() })
	_, err = inv.RegisterAsset(ctx, inventory.AssetRecord{Serial: b.Serial()}, "test")
	require.NoError(t, err)
	cat, err := profiles.NewCatalog()
	require.NoError(t, err)
	r := &killRig{bmc: b, ref: serverapi.BMCRef{Address: b.Address(), CredentialRef: "cred-1"}}
	r.p = &Provisioning{Inventory: inv, Profiles: cat,
		Credentials: oneCredential{credentials.Credential{Username: user, Password: pass}},
		Dial: func(ctx context.Context, ep hardware.Endpoint) (hardware.Machine, error) {
			m, err := hardware.Dial(ctx, ep)
			if err != nil || r.first != nil {
				return m, err
			}
			r.first = &killableMachine{Machine: m, dieAfter: dieAfter}
			return r.first, nil
		}}
	return r
}

// sideEffects are the counters one run of a step may move.
func sideEffects(c bmcsim.Counters) bmcsim.Counters {
	return bmcsim.Counters{Resets: c.Resets, PowerOns: c.PowerOns, BIOSApplies: c.BIOSApplies, BIOSResets: c.BIOSResets,
		VolumesCreated: c.VolumesCreated, VolumesDeleted: c.VolumesDeleted}
}

// TestConfigureBIOSAppliesOnceWhereverItDies: however the first run of
// ConfigureBIOS is cut short after one of its BMC calls, the retried
// activity ends with the profile's BIOS in force and the BMC having done
// exactly what one clean run does: one apply, the same resets and
// power-ons, no BIOS reset to defaults. Servers start off (as the
// simulator delivers them) or already running (a server racked powered
// on, or provisioned again).
func TestConfigureBIOSAppliesOnceWhereverItDies(t *testing.T) {
	for _, vendor := range []struct{ sim, reported string }{
		{bmcsim.VendorGeneric, "Metalflow"}, {bmcsim.VendorDell, "Dell Inc."},
	} {
		for _, poweredOn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/on=%v", vendor.sim, poweredOn), func(t *testing.T) {
				// applyTimeout is short for the killed run: its dead BMC
				// calls would otherwise keep it polling, which a killed
				// worker does not do.
				run := func(r *killRig, applyTimeout time.Duration) error {
					var env testsuite.WorkflowTestSuite
					a := env.NewTestActivityEnvironment()
					a.RegisterActivity(r.p.ConfigureBIOS)
					_, err := a.ExecuteActivity(r.p.ConfigureBIOS, serverapi.ConfigureBIOSInput{Serial: r.bmc.Serial(), BMC: r.ref,
						Profile: profiles.DefaultName, Vendor: vendor.reported,
						PollInterval: 50 * time.Millisecond, ApplyTimeout: applyTimeout})
					return err
				}
				settled := func(r *killRig) bmcsim.State {
					require.Eventually(t, func() bool { return r.bmc.PowerState() == bmcsim.PowerOn }, 10*time.Second, 10*time.Millisecond)
					return r.bmc.State()
				}
				clean := newKillRig(t, vendor.sim, poweredOn, 0)
				before := sideEffects(clean.bmc.Counters())
				require.NoError(t, run(clean, 10*time.Second))
				want := settled(clean)
				calls := clean.first.calls
				require.Positive(t, want.Counters.BIOSApplies-before.BIOSApplies, "the clean run applied the profile")

				for dieAfter := 1; dieAfter <= calls; dieAfter++ {
					r := newKillRig(t, vendor.sim, poweredOn, dieAfter)
					require.Equal(t, before, sideEffects(r.bmc.Counters()))
					// A kill after the last call may look like success here
					// (the final read-back's error only drops the report);
					// a real kill always has Temporal run the activity again.
					_ = run(r, time.Millisecond)
					require.Equal(t, dieAfter, r.first.calls, "the first run got as far as call %d", dieAfter)
					require.NoError(t, run(r, 10*time.Second), "the retry after call %d", dieAfter)
					require.NoError(t, run(r, 10*time.Second), "a third run changes nothing")
					got := settled(r)
					require.Equal(t, sideEffects(want.Counters), sideEffects(got.Counters), "died after call %d of %d", dieAfter, calls)
					for k, v := range profiles.Default().DesiredBIOS(vendor.reported) {
						require.Equal(t, v, fmt.Sprint(got.BIOS[k]), "died after call %d: %s", dieAfter, k)
					}
				}
			})
		}
	}
}

// TestConfigureRAIDBuildsOnceWhereverItDies: however the first run of
// ConfigureRAID is cut short after one of its BMC calls, the retried
// activity leaves the profile's one root mirror and the BMC having
// created and deleted exactly the volumes one clean run does, starting
// from empty drives or from a leftover volume of another level.
func TestConfigureRAIDBuildsOnceWhereverItDies(t *testing.T) {
	for _, vendor := range []struct{ sim, reported string }{
		{bmcsim.VendorGeneric, "Metalflow"}, {bmcsim.VendorDell, "Dell Inc."},
	} {
		for _, leftover := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/leftover=%v", vendor.sim, leftover), func(t *testing.T) {
				rig := func(dieAfter int) *killRig {
					r := newKillRig(t, vendor.sim, false, dieAfter)
					if leftover {
						user, pass := r.bmc.Credentials()
						ctx := t.Context()
						m, err := hardware.Dial(ctx, hardware.Endpoint{Address: r.bmc.Address(), Username: user, Password: pass})
						require.NoError(t, err)
						ctrls, err := m.Storage(ctx)
						require.NoError(t, err)
						c, err := pickController(ctrls, nil)
						require.NoError(t, err)
						_, err = m.CreateVolume(ctx, hardware.VolumeRequest{ControllerID: c.ID, RAIDType: "RAID0",
							DriveIDs: []string{c.Drives[0].ID}, Name: "leftover"})
						require.NoError(t, err)
						require.NoError(t, m.Close(ctx))
					}
					return r
				}
				run := func(r *killRig) error {
					var env testsuite.WorkflowTestSuite
					a := env.NewTestActivityEnvironment()
					a.RegisterActivity(r.p.ConfigureRAID)
					_, err := a.ExecuteActivity(r.p.ConfigureRAID, serverapi.ConfigureRAIDInput{Serial: r.bmc.Serial(), BMC: r.ref,
						Profile: profiles.DefaultName, Vendor: vendor.reported})
					return err
				}
				volumes := func(r *killRig) []string {
					var out []string
					for _, v := range r.bmc.State().Volumes {
						// Not whether it is still building: that is timing.
						out = append(out, fmt.Sprintf("%s %v", v.RAIDType, v.Drives))
					}
					return out
				}
				clean := rig(0)
				before := sideEffects(clean.bmc.Counters())
				require.NoError(t, run(clean))
				want := sideEffects(clean.bmc.Counters())
				require.Equal(t, 1, want.VolumesCreated-before.VolumesCreated, "the clean run built the mirror")
				wantVolumes := volumes(clean)
				require.Len(t, wantVolumes, 1)
				calls := clean.first.calls
				t.Logf("a clean run makes %d BMC calls; its volumes: %v", calls, wantVolumes)

				for dieAfter := 1; dieAfter <= calls; dieAfter++ {
					r := rig(dieAfter)
					_ = run(r)
					require.Equal(t, dieAfter, r.first.calls, "the first run got as far as call %d", dieAfter)
					require.NoError(t, run(r), "the retry after call %d", dieAfter)
					require.NoError(t, run(r), "a third run changes nothing")
					require.Equal(t, want, sideEffects(r.bmc.Counters()), "died after call %d of %d", dieAfter, calls)
					require.Equal(t, wantVolumes, volumes(r), "died after call %d of %d", dieAfter, calls)
				}
			})
		}
	}
}

// TestResetBIOSDefaultsResetsOnceWhereverItDies: the decommission's BIOS
// reset, on a running server with settings off their defaults, ends with
// the defaults in force and the resets and power-ons of one clean run,
// however its first run was cut short.
func TestResetBIOSDefaultsResetsOnceWhereverItDies(t *testing.T) {
	for _, vendor := range []struct{ sim, reported string }{
		{bmcsim.VendorGeneric, "Metalflow"}, {bmcsim.VendorDell, "Dell Inc."},
	} {
		t.Run(vendor.sim, func(t *testing.T) {
			rig := func(dieAfter int) (*killRig, map[string]any) {
				r := newKillRig(t, vendor.sim, false, dieAfter)
				defaults := r.bmc.State().BIOS
				user, pass := r.bmc.Credentials()
				ctx := t.Context()
				m, err := hardware.Dial(ctx, hardware.Endpoint{Address: r.bmc.Address(), Username: user, Password: pass})
				require.NoError(t, err)
				cur, err := m.BIOS(ctx)
				require.NoError(t, err)
				changed := map[string]string{}
				for k, v := range profiles.Default().DesiredBIOS(vendor.reported) {
					if cur[k] != v {
						changed[k] = v
					}
				}
				require.NotEmpty(t, changed)
				require.NoError(t, m.SetBIOS(ctx, changed))
				require.NoError(t, m.SetPower(ctx, hardware.PowerOn))
				require.NoError(t, m.Close(ctx))
				require.Eventually(t, func() bool { return r.bmc.PowerState() == bmcsim.PowerOn }, 10*time.Second, 10*time.Millisecond)
				require.NotEqual(t, defaults, r.bmc.State().BIOS, "the server runs with settings off their defaults")
				return r, defaults
			}
			run := func(r *killRig) error {
				var env testsuite.WorkflowTestSuite
				a := env.NewTestActivityEnvironment()
				a.RegisterActivity(r.p.ResetBIOSDefaults)
				_, err := a.ExecuteActivity(r.p.ResetBIOSDefaults, serverapi.DecommissionStepInput{Serial: r.bmc.Serial(), BMC: r.ref,
					Key: "decommission-1", Actor: "test"})
				return err
			}
			settled := func(r *killRig) bmcsim.State {
				require.Eventually(t, func() bool { return r.bmc.PowerState() == bmcsim.PowerOn }, 10*time.Second, 10*time.Millisecond)
				return r.bmc.State()
			}
			clean, defaults := rig(0)
			require.NoError(t, run(clean))
			want := settled(clean)
			require.Equal(t, defaults, want.BIOS, "the clean run restored the defaults")
			calls := clean.first.calls

			for dieAfter := 1; dieAfter <= calls; dieAfter++ {
				r, defaults := rig(dieAfter)
				_ = run(r)
				require.Equal(t, dieAfter, r.first.calls, "the first run got as far as call %d", dieAfter)
				require.NoError(t, run(r), "the retry after call %d", dieAfter)
				require.NoError(t, run(r), "a third run changes nothing")
				got := settled(r)
				// Staging the defaults twice before the reset is one
				// staging; what must not happen is staging them after.
				wantC, gotC := sideEffects(want.Counters), sideEffects(got.Counters)
				wantC.BIOSResets, gotC.BIOSResets = 0, 0
				require.Equal(t, wantC, gotC, "died after call %d of %d", dieAfter, calls)
				require.Equal(t, defaults, got.BIOS, "died after call %d", dieAfter)
				require.Empty(t, got.BIOSPending, "died after call %d", dieAfter)
				lastStage, lastReset := -1, -1
				for i, req := range r.bmc.Requests() {
					switch {
					case strings.HasSuffix(req.Path, "Bios.ResetBios"):
						lastStage = i
					case strings.HasSuffix(req.Path, "ComputerSystem.Reset"):
						lastReset = i
					}
				}
				require.Positive(t, lastStage, "died after call %d: the defaults were staged", dieAfter)
				require.Less(t, lastStage, lastReset, "died after call %d: no reset to defaults left pending after the reset", dieAfter)
			}
		})
	}
}

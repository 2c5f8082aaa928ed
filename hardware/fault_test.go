package hardware_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/hardware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFaults injects each misbehaviour the simulator offers and checks the
// kind the lifecycle will act on: retry, park for a human, or give up.
func TestFaults(t *testing.T) {
	t.Run("wrong password is AuthFailed and never echoed", func(t *testing.T) {
		f, b := quickFleet(t, bmcsim.VendorDell)
		ep := endpointOf(f, b)
		ep.Password = "Wr0ng-Secret-4711"
		_, err := hardware.Dial(ctxT(t), ep)
		requireKind(t, err, hardware.AuthFailed)
		assert.NotContains(t, err.Error(), ep.Password)
		_, real := b.Credentials()
		assert.NotContains(t, err.Error(), real)
	})

	t.Run("unknown CA is AuthFailed, InsecureTLS and plain HTTP work", func(t *testing.T) {
		f, b := quickFleet(t, bmcsim.VendorHPE)
		ep := endpointOf(f, b)
		ep.CACertPEM = nil
		_, err := hardware.Dial(ctxT(t), ep)
		requireKind(t, err, hardware.AuthFailed)
		ep.InsecureTLS = true
		m := dial(t, ep)
		_, err = m.PowerState(ctxT(t))
		require.NoError(t, err)

		f, b = quickFleet(t, bmcsim.VendorSupermicro, func(c *bmcsim.Config) { c.InsecureHTTP = true })
		ep = endpointOf(f, b)
		require.True(t, strings.HasPrefix(ep.Address, "http://"), ep.Address)
		m = dial(t, ep)
		_, err = m.Storage(ctxT(t))
		require.NoError(t, err)
	})

	for _, status := range []int{503, 500} {
		t.Run("injected "+strconv.Itoa(status)+" is Transient", func(t *testing.T) {
			f, b := quickFleet(t, bmcsim.VendorGeneric)
			m := dial(t, endpointOf(f, b))
			ctx := ctxT(t)
			b.SetFaults(bmcsim.Faults{ErrorRate: 1, ErrorStatus: status})
			_, err := m.PowerState(ctx)
			requireKind(t, err, hardware.Transient)
			requireKind(t, m.SetPower(ctx, hardware.PowerOn), hardware.Transient)
			_, err = m.BIOS(ctx)
			requireKind(t, err, hardware.Transient)
			_, err = m.Storage(ctx)
			requireKind(t, err, hardware.Transient)
			_, err = hardware.Dial(ctx, endpointOf(f, b))
			requireKind(t, err, hardware.Transient)

			b.SetFaults(bmcsim.Faults{})
			_, err = m.PowerState(ctx)
			require.NoError(t, err, "the same session works once the BMC recovers")
		})
	}

	t.Run("hang is Transient within the timeout", func(t *testing.T) {
		f, b := quickFleet(t, bmcsim.VendorDell)
		ep := endpointOf(f, b)
		ep.Timeout = 300 * time.Millisecond
		m := dial(t, ep)
		b.SetFaults(bmcsim.Faults{Hang: true})
		start := time.Now()
		_, err := m.PowerState(ctxT(t))
		requireKind(t, err, hardware.Transient)
		assert.Less(t, time.Since(start), 3*time.Second)
		start = time.Now()
		_, err = hardware.Dial(ctxT(t), ep)
		requireKind(t, err, hardware.Transient)
		assert.Less(t, time.Since(start), 3*time.Second)
	})

	t.Run("lost sessions are logged in again", func(t *testing.T) {
		f, b := quickFleet(t, bmcsim.VendorHPE)
		m := dial(t, endpointOf(f, b))
		ctx := ctxT(t)
		_, err := m.Storage(ctx) // both sessions open
		require.NoError(t, err)
		b.DropSessions()
		_, err = m.PowerState(ctx)
		require.NoError(t, err)
		b.DropSessions()
		_, err = m.Storage(ctx)
		require.NoError(t, err)
	})

	t.Run("BMC reboot is Transient until it is back", func(t *testing.T) {
		// Longer than a read's retries: a blip shorter than those passes
		// unnoticed, which is what they are for.
		f, b := quickFleet(t, bmcsim.VendorSupermicro, func(c *bmcsim.Config) { c.RebootDuration = 5 * time.Second })
		m := dial(t, endpointOf(f, b))
		ctx := ctxT(t)
		b.Reboot()
		_, err := m.PowerState(ctx)
		requireKind(t, err, hardware.Transient)
		eventually(t, "BMC back", func() bool { _, err := m.PowerState(ctx); return err == nil })
	})

	t.Run("closed session and cancelled context", func(t *testing.T) {
		f, b := quickFleet(t, bmcsim.VendorGeneric)
		m := dial(t, endpointOf(f, b))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := m.PowerState(ctx)
		requireKind(t, err, hardware.Transient)
		require.NoError(t, m.Close(ctxT(t)))
		_, err = m.PowerState(ctxT(t))
		requireKind(t, err, hardware.Rejected)
	})

	t.Run("closed port is Transient", func(t *testing.T) {
		f, b := quickFleet(t, bmcsim.VendorGeneric)
		ep := endpointOf(f, b)
		m := dial(t, ep)
		require.NoError(t, f.Close())
		_, err := m.PowerState(ctxT(t))
		requireKind(t, err, hardware.Transient)
		_, err = hardware.Dial(ctxT(t), ep)
		requireKind(t, err, hardware.Transient)
	})

	t.Run("task ending in Exception is Rejected and leaves no volume", func(t *testing.T) {
		f, b := quickFleet(t, bmcsim.VendorDell)
		m := dial(t, endpointOf(f, b))
		ctx := ctxT(t)
		ctls, err := m.Storage(ctx)
		require.NoError(t, err)
		b.SetFaults(bmcsim.Faults{TaskException: true})
		_, err = m.CreateVolume(ctx, hardware.VolumeRequest{RAIDType: "RAID1", DriveIDs: []string{ctls[0].Drives[0].ID, ctls[0].Drives[1].ID}})
		he := requireKind(t, err, hardware.Rejected)
		assert.Contains(t, he.Error(), "Exception")
		assert.Empty(t, b.State().Volumes)
	})

	t.Run("missing Bios and Storage are Unsupported", func(t *testing.T) {
		f, err := bmcsim.Start(bmcsim.Config{Count: 1, Mockup: bareTree(t), PostDelay: 100 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = f.Close() })
		b := f.BMCs()[0]
		m := dial(t, endpointOf(f, b))
		ctx := ctxT(t)
		state, err := m.PowerState(ctx)
		require.NoError(t, err, "power works on any Redfish service")
		assert.Equal(t, hardware.PowerOff, state)
		_, err = m.BIOS(ctx)
		requireKind(t, err, hardware.Unsupported)
		_, err = m.PendingBIOS(ctx)
		requireKind(t, err, hardware.Unsupported)
		requireKind(t, m.SetBIOS(ctx, map[string]string{"BootMode": "Uefi"}), hardware.Unsupported)
		requireKind(t, m.ResetBIOS(ctx), hardware.Unsupported)
		_, err = m.Storage(ctx)
		requireKind(t, err, hardware.Unsupported)
		_, err = m.CreateVolume(ctx, hardware.VolumeRequest{RAIDType: "RAID1", DriveIDs: []string{"0", "1"}})
		requireKind(t, err, hardware.Unsupported)
		requireKind(t, m.DeleteVolume(ctx, "1"), hardware.Unsupported)
		requireKind(t, m.SecureErase(ctx, "0"), hardware.Unsupported)
	})
}

// bareTree writes a Redfish service with one system that has neither Bios
// nor Storage, under a system ID bmclib does not know, in the DMTF mockup
// layout bmcsim serves.
func bareTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	docs := map[string]string{
		"": `{"@odata.id":"/redfish/v1","@odata.type":"#ServiceRoot.v1_11_0.ServiceRoot","Id":"RootService","Name":"Root Service",
			"RedfishVersion":"1.13.0","Systems":{"@odata.id":"/redfish/v1/Systems"},"SessionService":{"@odata.id":"/redfish/v1/SessionService"},
			"Links":{"Sessions":{"@odata.id":"/redfish/v1/SessionService/Sessions"}}}`,
		"Systems": `{"@odata.id":"/redfish/v1/Systems","@odata.type":"#ComputerSystemCollection.ComputerSystemCollection","Name":"Systems",
			"Members":[{"@odata.id":"/redfish/v1/Systems/Bare-1"}],"Members@odata.count":1}`,
		"Systems/Bare-1": `{"@odata.id":"/redfish/v1/Systems/Bare-1","@odata.type":"#ComputerSystem.v1_16_0.ComputerSystem","Id":"Bare-1","Name":"Bare",
			"Manufacturer":"Nobody","Model":"Bare","SerialNumber":"BARE0001","PowerState":"Off",
			"Boot":{"BootSourceOverrideEnabled":"Disabled","BootSourceOverrideTarget":"None","BootSourceOverrideMode":"UEFI"},
			"Actions":{"#ComputerSystem.Reset":{"target":"/redfish/v1/Systems/Bare-1/Actions/ComputerSystem.Reset",
			"ResetType@Redfish.AllowableValues":["On","ForceOff","GracefulShutdown","ForceRestart"]}}}`,
		"SessionService": `{"@odata.id":"/redfish/v1/SessionService","@odata.type":"#SessionService.v1_1_8.SessionService","Id":"SessionService",
			"Name":"Session Service","ServiceEnabled":true,"SessionTimeout":1800,"Sessions":{"@odata.id":"/redfish/v1/SessionService/Sessions"}}`,
		"SessionService/Sessions": `{"@odata.id":"/redfish/v1/SessionService/Sessions","@odata.type":"#SessionCollection.SessionCollection",
			"Name":"Sessions","Members":[],"Members@odata.count":0}`,
	}
	for p, body := range docs {
		d := filepath.Join(dir, "redfish", "v1", filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(d, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(d, "index.json"), []byte(body), 0o644))
	}
	return dir
}

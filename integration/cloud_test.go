package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/cloud"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/internal/testironic"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// startIronic runs a real Ironic for one test, its conductor in the group
// of site dc1 so nodes pinned to their site's group are served. It skips
// the test, saying what to install, where Ironic is not installed.
func startIronic(t *testing.T) (*testironic.Server, *cloud.Ironic) {
	t.Helper()
	// As on a corporate image: with either set, python-requests lets it
	// override a node's redfish_verify_ca=false, and Ironic (run as
	// scripts/ironic.sh runs it) must not see them.
	t.Setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	t.Setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
	s, err := testironic.StartWith(testironic.Options{ConductorGroup: "dc1"})
	if testironic.IsUnavailable(err) {
		t.Skipf("skipping: real Ironic needed for cloud registration: %v", err)
	}
	require.NoError(t, err, "Ironic is installed but did not start")
	t.Cleanup(s.Stop)
	c, err := cloud.NewIronic(context.Background(), cloud.IronicOptions{URL: s.URL(), PollInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	return s, c
}

// cloudAsset is the CMDB record with what this test checks.
type cloudAsset struct {
	State    string             `json:"state"`
	Tenant   string             `json:"tenant"`
	Hardware hardware.Inventory `json:"hardware"`
	History  []inventory.Change `json:"history"`
}

// ironicNodeRaw is the node exactly as Ironic's API serves it, to show no
// password comes back from Ironic either (not just from package cloud).
func ironicNodeRaw(t *testing.T, base, serial string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/v1/nodes/"+serial, nil)
	require.NoError(t, err)
	req.Header.Set("X-OpenStack-Ironic-API-Version", cloud.IronicMicroversion)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, string(b))
	return string(b)
}

// TestLifecycleRegistersInIronic provisions simulated servers to `ready`
// against a real Ironic: the node is enrolled from inspection, Ironic's own
// Redfish driver (sushy) reads the simulated BMC during manage, and the
// tenant owns the node. Then Ironic goes down during RegisterCloud: the
// step is retried by Temporal and never reaches a human; when Ironic is
// back but cannot manage the node (its BMC answers 500), the server parks
// in attention with Ironic's last_error, and a retry after the fix ends
// ready with the same node.
func TestLifecycleRegistersInIronic(t *testing.T) {
	ironic, ic := startIronic(t)
	ctx := context.Background()
	f := startFleet(t, 2, "--ironic-url", ironic.URL(), "--ironic-site-conductor-groups")
	logText, err := os.ReadFile(f.proc.log)
	require.NoError(t, err)
	require.Contains(t, string(logText), "cloud registration is on")

	a, b := f.fleet[0], f.fleet[1]
	// A malformed tenant is refused before anything is stored or started.
	r := do(t, http.MethodPost, f.api+"/api/v1/servers",
		fmt.Sprintf(`{"serial":%q,"tenant":"proj alpha","bmc":{"address":%q,"username":%q,"password":%q}}`, a.Serial, a.Address, a.Username, a.Password))
	require.Equal(t, http.StatusBadRequest, r.code, string(r.body))
	require.Contains(t, r.errorMessage(t), "tenant")
	r = do(t, http.MethodGet, f.api+"/api/v1/servers/"+a.Serial, "")
	require.Equal(t, http.StatusNotFound, r.code, "the refused request started nothing")

	registerFor := func(e fleetEntry, tenant string, unit int) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{
			"serial": e.Serial, "tenant": tenant,
			"bmc":      map[string]string{"address": e.Address, "username": e.Username, "password": e.Password},
			"location": serverapi.Location{Site: "dc1", Room: "A", Rack: "R08", Unit: unit, Face: "front"},
		})
		r := do(t, http.MethodPost, f.api+"/api/v1/servers", string(body))
		require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	}

	// --- Server A: straight to ready.
	registerFor(a, "proj-alpha", 1)
	st := waitStateWithin(t, f.api, a.Serial, serverapi.StateReady, 3*time.Minute)
	for _, s := range st.Steps {
		if s.Name == serverapi.StepJoinAggregate {
			require.Equal(t, stepapi.StepSkipped, s.Status)
			require.Contains(t, s.Note, "only hypervisors", "the default profile is a compute server")
			continue
		}
		if s.Name == serverapi.StepJoinLoadBalancer {
			require.Equal(t, stepapi.StepSkipped, s.Status)
			require.Contains(t, s.Note, "no load-balancer pools")
			continue
		}
		require.Equal(t, stepapi.StepDone, s.Status, "step %s", s.Name)
	}
	require.Equal(t, "proj-alpha", st.Tenant)
	requireTenantSees(t, f.api, "proj-alpha", a.Serial)
	require.NotNil(t, st.Cloud)
	require.Equal(t, cloud.StateAvailable, st.Cloud.ProvisionState)

	n, err := ic.GetNode(ctx, a.Serial)
	require.NoError(t, err)
	require.Equal(t, st.Cloud.NodeUUID, n.UUID)
	require.Equal(t, cloud.HardwareRedfish, n.HardwareType)
	require.Equal(t, a.Address, n.DriverInfo["redfish_address"], "driver_info points at the simulated BMC")
	require.Equal(t, a.Username, n.DriverInfo["redfish_username"])
	require.Contains(t, []any{false, "false", "False"}, n.DriverInfo["redfish_verify_ca"], "the simulator's certificate is self-signed")
	raw := ironicNodeRaw(t, ironic.URL(), a.Serial)
	require.NotContains(t, raw, a.Password, "Ironic does not hand the BMC password back")
	require.Contains(t, raw, `"redfish_password": "******"`)

	var asset cloudAsset
	getJSON(t, f.api+"/api/v1/servers/"+a.Serial+"/asset", &asset)
	inv := asset.Hardware
	var localBytes int64
	for _, d := range inv.Drives {
		localBytes += d.CapacityBytes
	}
	require.Equal(t, "x86", inv.CPUArch, "Redfish's ProcessorArchitecture")
	require.NotZero(t, inv.TotalThreads)
	for k, v := range map[string]any{
		"cpus": float64(inv.TotalThreads), "memory_mb": float64(inv.MemoryGiB * 1024),
		"local_gb": float64(localBytes / 1_000_000_000), "cpu_arch": "x86_64",
	} {
		require.Equal(t, v, n.Properties[k], "property %s from inspection", k)
	}
	// Ironic adds the vendor itself, read from the simulated BMC by its
	// Redfish management interface while managing the node.
	require.Equal(t, inv.Vendor, n.Properties["vendor"])
	require.Equal(t, "baremetal", n.ResourceClass, "the default profile's resource class")
	require.Equal(t, "dc1", n.ConductorGroup, "pinned to its site's conductors")
	require.Equal(t, "dc1/A/R08", n.Extra["failure_domain"])
	require.ElementsMatch(t, lower(a.MACs), n.MACs, "one port per MAC")
	require.Len(t, n.MACs, len(a.MACs))
	require.Equal(t, "proj-alpha", n.Owner)
	require.Equal(t, "proj-alpha", n.Lessee)
	require.Equal(t, cloud.StateAvailable, n.ProvisionState)
	// Ironic's redfish power interface read this from the simulated BMC
	// through sushy during manage: nobody else tells Ironic a power state.
	sim := f.bmc(t, a.ID)
	require.NotEmpty(t, n.PowerState)
	require.Equal(t, "power "+strings.ToLower(sim.Power), n.PowerState)

	require.Equal(t, "ready", asset.State)
	require.Equal(t, "proj-alpha", asset.Tenant)
	var details []string
	for _, h := range asset.History {
		details = append(details, h.Action+": "+h.Detail)
	}
	require.Contains(t, strings.Join(details, "\n"), "installed → cloud-available: Ironic node "+n.UUID)
	require.Contains(t, strings.Join(details, "\n"), `tenant "" → "proj-alpha"`)
	require.Contains(t, strings.Join(details, "\n"), "cloud-available → ready")

	h := historyText(t, f.temporal, "server/"+a.Serial)
	require.Contains(t, h, "RegisterCloud")
	require.NotContains(t, h, a.Password, "the BMC password leaked into workflow history")

	// --- Server B: Ironic is down when it gets to RegisterCloud.
	ironic.Halt()
	t.Cleanup(func() { _ = ironic.Resume() })
	registerFor(b, "proj-beta", 3)
	c := temporalClient(t, f.temporal)
	var lastFailure string
	eventually(t, 3*time.Minute, b.Serial+" retries RegisterCloud", func() error {
		desc, err := c.DescribeWorkflowExecution(ctx, "server/"+b.Serial, "")
		if err != nil {
			return err
		}
		for _, pa := range desc.GetPendingActivities() {
			if pa.GetActivityType().GetName() == "RegisterCloud" && pa.GetAttempt() >= 3 {
				lastFailure = pa.GetLastFailure().GetMessage()
				return nil
			}
		}
		return fmt.Errorf("RegisterCloud not retried yet (%d pending)", len(desc.GetPendingActivities()))
	})
	require.Contains(t, lastFailure, "connection refused")
	require.NotContains(t, lastFailure, b.Password)
	st = getServer(t, f.api, b.Serial)
	require.Equal(t, serverapi.StateProvisioning, st.State, "a transient outage never reaches a human")
	require.Equal(t, serverapi.StepRegisterCloud, st.Step)
	require.Nil(t, st.Attention)

	// Ironic comes back, but now B's BMC answers every request with 500:
	// Ironic's manage fails, the node falls back to enroll, and the server
	// parks in attention with Ironic's last_error.
	r = do(t, http.MethodPut, f.admin+"/bmcs/"+b.ID+"/faults", `{"error_rate":1,"error_status":500}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	require.NoError(t, ironic.Resume())
	st = waitStateWithin(t, f.api, b.Serial, serverapi.StateAttention, 3*time.Minute)
	require.Equal(t, serverapi.StepRegisterCloud, st.Attention.Step)
	require.Contains(t, st.Attention.Error, "last_error", "Ironic's own reason reaches staff")
	require.Contains(t, st.Attention.Error, "instead of \"manageable\"")
	require.NotContains(t, st.Attention.Error, b.Password)
	n, err = ic.GetNode(ctx, b.Serial)
	require.NoError(t, err)
	require.Equal(t, cloud.StateEnroll, n.ProvisionState)
	require.NotEmpty(t, n.LastError)

	// The BMC is fixed; staff retry, and the same node is reconciled and
	// brought to available.
	r = do(t, http.MethodPut, f.admin+"/bmcs/"+b.ID+"/faults", `{}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+b.Serial+"/retry", `{}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	st = waitStateWithin(t, f.api, b.Serial, serverapi.StateReady, 3*time.Minute)
	require.Equal(t, "proj-beta", st.Tenant)
	n, err = ic.GetNode(ctx, b.Serial)
	require.NoError(t, err)
	require.Equal(t, cloud.StateAvailable, n.ProvisionState)
	require.Empty(t, n.LastError)
	require.Equal(t, "proj-beta", n.Owner)
	require.ElementsMatch(t, lower(b.MACs), n.MACs)
	require.Equal(t, "power "+strings.ToLower(f.bmc(t, b.ID).Power), n.PowerState)
	// B's history holds the retried failures and the attention: still no
	// password, though Ironic's errors went through it.
	h = historyText(t, f.temporal, "server/"+b.Serial)
	require.Contains(t, h, "last_error")
	require.NotContains(t, h, b.Password, "the BMC password leaked into workflow history")
	// A's node is untouched by B's registration.
	n, err = ic.GetNode(ctx, a.Serial)
	require.NoError(t, err)
	require.Equal(t, "proj-alpha", n.Owner)
}

// TestDevWithoutIronicSaysCloudRegistrationIsOff: no --ironic-url, and
// `metalflow dev` says so when it starts.
func TestDevWithoutIronicSaysCloudRegistrationIsOff(t *testing.T) {
	s := startDev(t, "--ephemeral")
	b, err := os.ReadFile(s.proc.log)
	require.NoError(t, err)
	require.Contains(t, string(b), "cloud registration is off")
}

// requireTenantSees checks the project's visibility in metalflow: a token
// bound to the project lists and reads the server; another project's token
// finds no such server.
func requireTenantSees(t *testing.T, api, project, serial string) {
	t.Helper()
	token := func(project string) string {
		r := do(t, http.MethodPost, api+"/api/v1/tokens", `{"name":"`+project+`-portal","role":"viewer","project":"`+project+`"}`)
		require.Equal(t, http.StatusCreated, r.code, string(r.body))
		var created struct {
			Token string `json:"token"`
		}
		r.json(t, &created)
		u, err := url.Parse(api)
		require.NoError(t, err)
		return apiURL(u.Host, created.Token)
	}
	own, other := token(project), token("proj-someone-else")
	r := do(t, http.MethodGet, own+"/api/v1/servers", "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	require.Contains(t, string(r.body), `"serial":"`+serial+`"`)
	r = do(t, http.MethodGet, own+"/api/v1/servers/"+serial, "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	r = do(t, http.MethodGet, other+"/api/v1/servers", "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	require.NotContains(t, string(r.body), serial)
	r = do(t, http.MethodGet, other+"/api/v1/servers/"+serial, "")
	require.Equal(t, http.StatusNotFound, r.code, string(r.body))
	r = do(t, http.MethodGet, own+"/api/v1/racks", "")
	require.Equal(t, http.StatusForbidden, r.code, "a tenant does not see the fleet's racks")
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	r := do(t, http.MethodGet, url, "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	r.json(t, v)
}

func lower(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

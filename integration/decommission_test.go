package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/cloud"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

type decommissionView struct {
	serverapi.DecommissionStatus
	WorkflowID string `json:"workflowId"`
}

func getDecommission(t *testing.T, api, serial string) decommissionView {
	t.Helper()
	r := do(t, http.MethodGet, api+"/api/v1/servers/"+serial+"/decommission", "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	var d decommissionView
	r.json(t, &d)
	return d
}

// TestDecommissionWipesAndFreesTheRack provisions a simulated fleet (one
// of each vendor, no Ironic) to installed, decommissions it through the
// API, and checks the simulated hardware, the CMDB and the rack.
func TestDecommissionWipesAndFreesTheRack(t *testing.T) {
	f := startFleet(t, 4)
	defaults := map[string]map[string]any{}
	for i, e := range f.fleet {
		// A fresh simulated BMC has its BIOS at the defaults.
		defaults[e.ID] = f.bmc(t, e.ID).BIOS
		f.register(t, e, e.Password, "", &serverapi.Location{Site: "dc1", Room: "A", Rack: "R05", Unit: 2*i + 1, Face: "front"})
	}
	r := do(t, http.MethodDelete, f.api+"/api/v1/servers/SN-NOBODY", "")
	require.Equal(t, http.StatusNotFound, r.code, string(r.body))
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+f.fleet[0].Serial+"/unracked", "")
	require.Equal(t, http.StatusNotFound, r.code, "no decommission yet: %s", r.body)

	for _, e := range f.fleet {
		waitStateWithin(t, f.api, e.Serial, serverapi.StateInstalled, 3*time.Minute)
		r := do(t, http.MethodDelete, f.api+"/api/v1/servers/"+e.Serial, "")
		require.Equal(t, http.StatusAccepted, r.code, string(r.body))
		// The wipe and the BIOS reset take seconds on the simulator: the
		// technician's report comes too early and changes nothing.
		r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+e.Serial+"/unracked", "")
		require.Equal(t, http.StatusConflict, r.code, string(r.body))
		r = do(t, http.MethodDelete, f.api+"/api/v1/servers/"+e.Serial, "")
		require.Equal(t, http.StatusConflict, r.code, "one decommission at a time: %s", r.body)
	}

	vendors := map[string]bool{}
	for _, e := range f.fleet {
		vendors[strings.ToLower(e.Vendor)] = true
		var d decommissionView
		eventually(t, 3*time.Minute, e.Serial+" waits to be unracked", func() error {
			d = getDecommission(t, f.api, e.Serial)
			if d.State != serverapi.StateWaitingUnrack {
				return fmt.Errorf("decommission %s at %s (attention %+v)", d.State, d.Step, d.Attention)
			}
			return nil
		})
		require.Equal(t, "decommission/"+e.Serial, d.WorkflowID)
		notes := map[string]string{}
		for _, s := range d.Steps {
			notes[s.Name] = s.Note
			switch s.Name {
			case serverapi.StepLeaveAggregate, serverapi.StepDeleteCloudNode:
				require.Equal(t, stepapi.StepSkipped, s.Status, "%s %s", e.Serial, s.Name)
				require.NotEmpty(t, s.Note, "%s %s says why it was skipped", e.Serial, s.Name)
			case serverapi.StepUnrack:
				require.Equal(t, stepapi.StepRunning, s.Status)
			default:
				require.Equal(t, stepapi.StepDone, s.Status, "%s %s", e.Serial, s.Name)
			}
		}

		// On the simulated hardware: no volumes, drives erased where the
		// BMC can, BIOS back at its defaults, off.
		b := f.bmc(t, e.ID)
		require.Empty(t, b.Volumes, e.Serial)
		require.GreaterOrEqual(t, b.Counters["volumes_deleted"], 1, e.Serial)
		if strings.Contains(strings.ToLower(e.Vendor), "supermicro") {
			require.Zero(t, b.Counters["drives_erased"], e.Serial)
			require.Contains(t, notes[serverapi.StepSecureWipe], "no secure erase", e.Serial)
		} else {
			require.Positive(t, b.Counters["drives_erased"], "%s (%s)", e.Serial, e.Vendor)
		}
		for k, v := range defaults[e.ID] {
			require.Equal(t, fmt.Sprint(v), fmt.Sprint(b.BIOS[k]), "%s BIOS %s back at its default", e.Serial, k)
		}
		require.Equal(t, "off", strings.ToLower(b.Power), e.Serial)

		a := getAssetView(t, f.api, e.Serial)
		require.Equal(t, "decommissioned", a.State)
		require.NotNil(t, a.Placement, "still racked until the technician says otherwise")

		r := do(t, http.MethodPost, f.api+"/api/v1/servers/"+e.Serial+"/unracked", "")
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+e.Serial+"/unracked", "")
		require.Equal(t, http.StatusConflict, r.code, "unracked once: %s", r.body)

		a = getAssetView(t, f.api, e.Serial)
		require.Equal(t, "decommissioned", a.State)
		require.Nil(t, a.Placement, e.Serial)
		var actions []string
		for _, h := range a.History {
			actions = append(actions, h.Action)
		}
		for _, want := range []string{"drives wiped", "bios reset", "powered off", "state", "unit released"} {
			require.Contains(t, actions, want, "%s history %v", e.Serial, actions)
		}
		eventually(t, 30*time.Second, e.Serial+" decommissioned", func() error {
			if d := getDecommission(t, f.api, e.Serial); d.State != serverapi.StateDecommissioned {
				return fmt.Errorf("decommission %s", d.State)
			}
			return nil
		})
		// The server's own status no longer says installed.
		require.Equal(t, serverapi.StateDecommissioned, getServer(t, f.api, e.Serial).State)
	}

	require.True(t, vendors["supermicro"], "the fleet has a BMC without secure erase: %v", vendors)

	// The rack has room again, and monitoring forgot the BMCs.
	r = do(t, http.MethodGet, f.api+"/api/v1/racks/dc1/R05", "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	var rack struct {
		Units []struct{ Serial string } `json:"units"`
	}
	r.json(t, &rack)
	require.Empty(t, rack.Units)
	r = do(t, http.MethodGet, f.api+"/api/v1/sd/targets", "")
	require.Equal(t, http.StatusOK, r.code)
	var groups []any
	r.json(t, &groups)
	require.Empty(t, groups)
	// A finished decommission is final.
	r = do(t, http.MethodDelete, f.api+"/api/v1/servers/"+f.fleet[0].Serial, "")
	require.Equal(t, http.StatusConflict, r.code, string(r.body))

	// The Web UI shows history to everyone: the BMC travels by reference.
	h := historyText(t, f.temporal, serverapi.DecommissionWorkflowID(f.fleet[0].Serial))
	require.Contains(t, h, `"credentialRef":"cred-`)
	require.NotContains(t, h, f.fleet[0].Password, "the BMC password leaked into the decommission's history")
	// With -record (see record_test.go), this run is what
	// workflows/replay_test.go replays for the decommission.
	if *record {
		writeHistory(t, f.temporal, serverapi.DecommissionWorkflowID(f.fleet[0].Serial),
			filepath.Join("..", "workflows", "testdata", "decommission.json"))
	}
}

// TestDecommissionCancelsProvisioning decommissions two servers still
// being provisioned: one parked in attention at its BIOS step (the
// lifecycle had started writing to it, so it is wiped and waits to be
// unracked), one never racked and without a BMC (nothing to wipe, no unit
// to free). Each lifecycle ends cancelled, its compensation having
// withdrawn the pending netboot, before the decommission touches anything.
func TestDecommissionCancelsProvisioning(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nobios.yaml"), []byte(
		"name: nobios\nrole: compute\nbios: {\"*\": {NoSuchAttribute: \"On\"}}\n"+
			"raid: {logical_disks: [{size_gb: MAX, raid_level: \"1\", is_root_volume: true}]}\n"), 0o644))
	f := startFleet(t, 1, "--profiles", dir)
	e := f.fleet[0]
	f.register(t, e, e.Password, "nobios", &serverapi.Location{Site: "dc1", Room: "A", Rack: "R06", Unit: 3, Face: "front"})
	r := do(t, http.MethodPost, f.api+"/api/v1/servers", `{"serial":"SN-NEVER-RACKED"}`)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	st := waitStateWithin(t, f.api, e.Serial, serverapi.StateAttention, 3*time.Minute)
	require.Equal(t, serverapi.StepConfigureBIOS, st.Attention.Step)

	for _, serial := range []string{e.Serial, "SN-NEVER-RACKED"} {
		r = do(t, http.MethodDelete, f.api+"/api/v1/servers/"+serial, "")
		require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	}

	// The never-racked server goes straight through: nothing to wipe.
	eventually(t, 2*time.Minute, "SN-NEVER-RACKED decommissioned", func() error {
		if d := getDecommission(t, f.api, "SN-NEVER-RACKED"); d.State != serverapi.StateDecommissioned {
			return fmt.Errorf("decommission %s at %s (attention %+v)", d.State, d.Step, d.Attention)
		}
		return nil
	})
	d := getDecommission(t, f.api, "SN-NEVER-RACKED")
	require.Equal(t, serverapi.StepCancelProvisioning, d.Steps[0].Name)
	for _, s := range d.Steps {
		switch s.Name {
		case serverapi.StepCancelProvisioning, serverapi.StepRetireAsset:
			require.Equal(t, stepapi.StepDone, s.Status, s.Name)
		default:
			require.Equal(t, stepapi.StepSkipped, s.Status, s.Name)
		}
	}
	st = getServer(t, f.api, "SN-NEVER-RACKED")
	require.Equal(t, serverapi.StateDecommissioned, st.State)
	require.Equal(t, stepapi.StepFailed, st.Steps[0].Status, "the Rack step says it was cancelled")
	require.Contains(t, st.Steps[0].Error, "cancelled")

	// The one in attention is wiped, and waits for its technician.
	eventually(t, 3*time.Minute, e.Serial+" waits to be unracked", func() error {
		if d = getDecommission(t, f.api, e.Serial); d.State != serverapi.StateWaitingUnrack {
			return fmt.Errorf("decommission %s at %s (attention %+v)", d.State, d.Step, d.Attention)
		}
		return nil
	})
	for _, s := range d.Steps {
		switch s.Name {
		case serverapi.StepLeaveAggregate, serverapi.StepDeleteCloudNode:
			require.Equal(t, stepapi.StepSkipped, s.Status, s.Name)
		case serverapi.StepUnrack:
			require.Equal(t, stepapi.StepRunning, s.Status)
		default:
			require.Equal(t, stepapi.StepDone, s.Status, s.Name)
		}
	}
	require.Equal(t, serverapi.StateWaitingUnrack, getServer(t, f.api, e.Serial).State)
	b := f.bmc(t, e.ID)
	require.Zero(t, b.Counters["installs"], "a cancelled server never installs")
	require.Equal(t, "off", strings.ToLower(b.Power))
	a := getAssetView(t, f.api, e.Serial)
	var details []string
	for _, h := range a.History {
		details = append(details, h.Detail)
	}
	require.Contains(t, strings.Join(details, "\n"), "provisioning cancelled for decommissioning during ConfigureBIOS")
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+e.Serial+"/unracked", "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	require.Nil(t, getAssetView(t, f.api, e.Serial).Placement, "the rack unit is free")

	// Cancelled lifecycles are not decommissioned twice.
	r = do(t, http.MethodDelete, f.api+"/api/v1/servers/SN-NEVER-RACKED", "")
	require.Equal(t, http.StatusConflict, r.code, string(r.body))
	// With -record (see record_test.go), this run is what
	// workflows/replay_test.go replays for a decommission that cancels a
	// lifecycle, and for the lifecycle it cancelled.
	if *record {
		eventually(t, time.Minute, e.Serial+" decommissioned", func() error {
			if d := getDecommission(t, f.api, e.Serial); d.State != serverapi.StateDecommissioned {
				return fmt.Errorf("decommission %s", d.State)
			}
			return nil
		})
		writeHistory(t, f.temporal, serverapi.DecommissionWorkflowID(e.Serial),
			filepath.Join("..", "workflows", "testdata", "decommission-cancelling.json"))
		writeHistory(t, f.temporal, serverapi.LifecycleWorkflowID(e.Serial),
			filepath.Join("..", "workflows", "testdata", "lifecycle-cancelled.json"))
	}
}

// TestDecommissionDeletesTheIronicNode takes a server to ready against a
// real Ironic and decommissions it: the node is gone afterwards.
func TestDecommissionDeletesTheIronicNode(t *testing.T) {
	ironic, ic := startIronic(t)
	f := startFleet(t, 1, "--ironic-url", ironic.URL(), "--ironic-site-conductor-groups")
	e := f.fleet[0]
	f.register(t, e, e.Password, "", &serverapi.Location{Site: "dc1", Room: "A", Rack: "R09", Unit: 1, Face: "front"})
	waitStateWithin(t, f.api, e.Serial, serverapi.StateReady, 3*time.Minute)
	_, err := ic.GetNode(context.Background(), e.Serial)
	require.NoError(t, err, "the node exists before the decommission")

	r := do(t, http.MethodDelete, f.api+"/api/v1/servers/"+e.Serial, "")
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	var d decommissionView
	eventually(t, 3*time.Minute, e.Serial+" waits to be unracked", func() error {
		d = getDecommission(t, f.api, e.Serial)
		if d.State != serverapi.StateWaitingUnrack {
			return fmt.Errorf("decommission %s at %s (attention %+v)", d.State, d.Step, d.Attention)
		}
		return nil
	})
	for _, s := range d.Steps {
		switch s.Name {
		case serverapi.StepDeleteCloudNode:
			require.Equal(t, stepapi.StepDone, s.Status, "a real Ironic: the node is deleted, not skipped")
		case serverapi.StepLeaveAggregate:
			require.Equal(t, stepapi.StepSkipped, s.Status, "a compute server is in no aggregate")
		}
	}
	_, err = ic.GetNode(context.Background(), e.Serial)
	require.True(t, cloud.IsNotFound(err), "the Ironic node is gone: %v", err)
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+e.Serial+"/unracked", "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	a := getAssetView(t, f.api, e.Serial)
	require.Equal(t, "decommissioned", a.State)
	require.Nil(t, a.Placement)
	var actions []string
	for _, h := range a.History {
		actions = append(actions, h.Action)
	}
	require.Contains(t, actions, "cloud node deleted")
}

// listed is the fleet list's answer to filter ("" for the whole fleet):
// each server's state by serial, from every page.
func listed(t *testing.T, api, filter string) map[string]string {
	t.Helper()
	out := map[string]string{}
	token := ""
	for {
		r := do(t, http.MethodGet, api+"/api/v1/servers?pageSize=1000&"+filter+"&pageToken="+token, "")
		require.Equal(t, http.StatusOK, r.code, "%s: %s", filter, r.body)
		var page struct {
			Servers []struct {
				Serial string `json:"serial"`
				State  string `json:"state"`
			} `json:"servers"`
			NextPageToken string `json:"nextPageToken"`
		}
		r.json(t, &page)
		for _, s := range page.Servers {
			out[s.Serial] = s.State
		}
		if page.NextPageToken == "" {
			return out
		}
		token = page.NextPageToken
	}
}

// TestFleetListFollowsTheDecommission is the user's report: a server's own
// status says decommissioning, waiting-unrack and decommissioned, and the
// fleet list, filtered by each, finds it in that state, and no longer
// under the state its lifecycle ended in.
func TestFleetListFollowsTheDecommission(t *testing.T) {
	f := startFleet(t, 1, "--sim-vendor", "dell")
	e := f.fleet[0]
	f.register(t, e, e.Password, "", &serverapi.Location{Site: "dc1", Room: "A", Rack: "R11", Unit: 5, Face: "front"})
	waitStateWithin(t, f.api, e.Serial, serverapi.StateInstalled, 3*time.Minute)
	require.Equal(t, serverapi.StateInstalled, listed(t, f.api, "state=installed&rack=R11")[e.Serial])

	// A Dell's volume deletes run as tasks: failing them parks the wipe in
	// attention, which holds the server in decommissioning.
	r := do(t, http.MethodPut, f.admin+"/bmcs/"+e.ID+"/faults", `{"task_exception":true}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	r = do(t, http.MethodDelete, f.api+"/api/v1/servers/"+e.Serial, "")
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	waitListed := func(state string) {
		t.Helper()
		eventually(t, 3*time.Minute, e.Serial+" listed "+state, func() error {
			if got := getServer(t, f.api, e.Serial).State; got != state {
				return fmt.Errorf("status says %s", got)
			}
			if got, ok := listed(t, f.api, "state="+state)[e.Serial]; !ok || got != state {
				return fmt.Errorf("state=%s lists it as %q (listed: %v)", state, got, ok)
			}
			if got := listed(t, f.api, "")[e.Serial]; got != state {
				return fmt.Errorf("the whole fleet lists it as %s", got)
			}
			if got := listed(t, f.api, "state="+state+"&rack=R11")[e.Serial]; got != state {
				return fmt.Errorf("its rack lists it as %q", got)
			}
			return nil
		})
		_, stale := listed(t, f.api, "state=installed")[e.Serial]
		require.False(t, stale, "a server that is %s is not listed as installed", state)
	}
	eventually(t, 3*time.Minute, "the wipe parks in attention", func() error {
		if d := getDecommission(t, f.api, e.Serial); d.State != serverapi.StateAttention {
			return fmt.Errorf("decommission %s at %s", d.State, d.Step)
		}
		return nil
	})
	waitListed(serverapi.StateDecommissioning)

	r = do(t, http.MethodPut, f.admin+"/bmcs/"+e.ID+"/faults", `{}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+e.Serial+"/decommission/retry", "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	waitListed(serverapi.StateWaitingUnrack)

	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+e.Serial+"/unracked", "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	waitListed(serverapi.StateDecommissioned)
}

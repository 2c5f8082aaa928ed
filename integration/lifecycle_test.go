package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// base64Field finds protojson's base64 payload data.
var base64Field = regexp.MustCompile(`"data":"([A-Za-z0-9+/=]+)"`)

// fleetEntry is one line of the simulated fleet's manifest.
type fleetEntry struct {
	ID       string   `json:"id"`
	Vendor   string   `json:"vendor"`
	Address  string   `json:"address"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	Serial   string   `json:"serial"`
	MACs     []string `json:"macs"`
}

// simBMC is what the simulator's admin endpoint says about one BMC: the
// ground truth a test checks the lifecycle's work against.
type simBMC struct {
	Power        string `json:"power"`
	BootOverride struct {
		Target  string `json:"target"`
		Enabled string `json:"enabled"`
	} `json:"boot_override"`
	BIOS    map[string]any `json:"bios"`
	Volumes []struct {
		ID       string   `json:"id"`
		Name     string   `json:"name"`
		RAIDType string   `json:"raid_type"`
		Drives   []string `json:"drives"`
	} `json:"volumes"`
	Host struct {
		State       string `json:"state"`
		OSInstalled bool   `json:"os_installed"`
		BootSource  string `json:"boot_source"`
	} `json:"host"`
	Counters map[string]int `json:"counters"`
}

type fleetStack struct {
	*devStack
	fleet []fleetEntry
	admin string
}

// startFleet runs `metalflow dev` with a simulated fleet of n servers.
func startFleet(t *testing.T, n int, extra ...string) *fleetStack {
	t.Helper()
	dir := t.TempDir()
	manifest := filepath.Join(dir, "fleet.json")
	admin := freeAddr(t)
	args := append([]string{"--ephemeral", "--sim-servers", fmt.Sprint(n), "--sim-vendor", "mixed",
		// POST takes 0.6 s and an install 3 s: fast, but slow enough that
		// steps overlap across servers as they would in a rack.
		"--sim-speed", "100", "--sim-manifest", manifest, "--sim-admin", admin}, extra...)
	s := startDev(t, args...)
	raw, err := os.ReadFile(manifest)
	require.NoError(t, err)
	var fleet []fleetEntry
	require.NoError(t, json.Unmarshal(raw, &fleet))
	require.Len(t, fleet, n)
	return &fleetStack{devStack: s, fleet: fleet, admin: "http://" + admin}
}

func (f *fleetStack) bmc(t *testing.T, id string) simBMC {
	t.Helper()
	r := do(t, http.MethodGet, f.admin+"/bmcs/"+id, "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	var b simBMC
	r.json(t, &b)
	return b
}

func (f *fleetStack) register(t *testing.T, e fleetEntry, password, profile string, loc *serverapi.Location) {
	t.Helper()
	body := map[string]any{
		"serial": e.Serial,
		"bmc":    map[string]string{"address": e.Address, "username": e.Username, "password": password},
	}
	if profile != "" {
		body["profile"] = profile
	}
	if loc != nil {
		body["location"] = loc
	}
	b, _ := json.Marshal(body)
	r := do(t, http.MethodPost, f.api+"/api/v1/servers", string(b))
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
}

type assetView struct {
	Serial    string   `json:"serial"`
	Vendor    string   `json:"vendor"`
	State     string   `json:"state"`
	MACs      []string `json:"macs"`
	Placement *struct {
		Rack string `json:"rack"`
		Unit int    `json:"unit"`
	} `json:"placement"`
	History []struct {
		Actor  string `json:"actor"`
		Action string `json:"action"`
		Detail string `json:"detail"`
	} `json:"history"`
}

func getAssetView(t *testing.T, api, serial string) assetView {
	t.Helper()
	r := do(t, http.MethodGet, api+"/api/v1/servers/"+serial+"/asset", "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	var a assetView
	r.json(t, &a)
	return a
}

// historyText is a workflow's whole event history as the Web UI can show
// it: every event as JSON, and every payload decoded from its base64.
func historyText(t *testing.T, hostPort, workflowID string) string {
	t.Helper()
	c := temporalClient(t, hostPort)
	it := c.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var b strings.Builder
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		js, err := protojson.Marshal(ev)
		require.NoError(t, err)
		b.Write(js)
		b.WriteByte('\n')
		for _, m := range base64Field.FindAllStringSubmatch(string(js), -1) {
			if dec, err := base64.StdEncoding.DecodeString(m[1]); err == nil {
				b.Write(dec)
				b.WriteByte('\n')
			}
		}
	}
	return b.String()
}

func TestLifecycleProvisionsMixedFleet(t *testing.T) {
	f := startFleet(t, 5)
	// Two arrive already racked; three are racked by a technician.
	for i, e := range f.fleet {
		var loc *serverapi.Location
		if i < 2 {
			loc = &serverapi.Location{Site: "dc1", Room: "A", Rack: "R03", Unit: 2*i + 1, Face: "front"}
		}
		f.register(t, e, e.Password, "", loc)
	}
	for i, e := range f.fleet[2:] {
		waitState(t, f.api, e.Serial, serverapi.StateWaitingRack)
		r := do(t, http.MethodPost, f.api+"/api/v1/servers/"+e.Serial+"/racked",
			fmt.Sprintf(`{"site":"dc1","room":"A","rack":"R03","unit":%d,"face":"front"}`, 10+2*i))
		require.Equal(t, http.StatusOK, r.code, string(r.body))
	}

	vendors := map[string]bool{}
	for _, e := range f.fleet {
		st := waitStateWithin(t, f.api, e.Serial, serverapi.StateInstalled, 3*time.Minute)
		vendors[e.Vendor] = true
		for _, s := range st.Steps {
			switch s.Name {
			case serverapi.StepRegisterCloud, serverapi.StepJoinAggregate, serverapi.StepAssignTenant, serverapi.StepJoinLoadBalancer:
				// No --ironic-url: skipped by configuration, never faked as
				// done; no pools requested: no load balancer to join.
				require.Equal(t, stepapi.StepSkipped, s.Status, "%s step %s", e.Serial, s.Name)
				require.NotEmpty(t, s.Note, "%s step %s says why it was skipped", e.Serial, s.Name)
			default:
				require.Equal(t, stepapi.StepDone, s.Status, "%s step %s", e.Serial, s.Name)
			}
		}
		require.NotNil(t, st.Hardware)
		require.Equal(t, profiles.DefaultName, st.Hardware.Profile)

		// On the simulated hardware: the profile's BIOS values, one RAID-1
		// root volume, one install that phoned home, booting from disk.
		b := f.bmc(t, e.ID)
		want := profiles.Default().DesiredBIOS(st.Hardware.Vendor)
		require.NotEmpty(t, want, "%s (%s) gets BIOS settings", e.Serial, st.Hardware.Vendor)
		for k, v := range want {
			require.Equal(t, v, fmt.Sprint(b.BIOS[k]), "%s BIOS %s", e.Serial, k)
		}
		require.Len(t, b.Volumes, 1, e.Serial)
		require.Equal(t, "RAID1", b.Volumes[0].RAIDType)
		require.Len(t, b.Volumes[0].Drives, 2)
		require.Equal(t, 1, b.Counters["volumes_created"], e.Serial)
		require.Equal(t, 1, b.Counters["installs"], e.Serial)
		require.Equal(t, 1, b.Counters["phone_homes"], e.Serial)
		require.Equal(t, 1, b.Counters["bios_applies"], e.Serial)
		require.True(t, b.Host.OSInstalled)
		require.Equal(t, "Hdd", b.BootOverride.Target, "%s boots from disk after the install", e.Serial)
		require.Equal(t, "Continuous", b.BootOverride.Enabled)

		// In the CMDB: one asset with what inspection found, and its history.
		a := getAssetView(t, f.api, e.Serial)
		require.Equal(t, "installed", a.State)
		require.Equal(t, st.Hardware.Vendor, a.Vendor)
		require.ElementsMatch(t, e.MACs, a.MACs)
		require.Equal(t, "R03", a.Placement.Rack)
		var actions []string
		for _, h := range a.History {
			actions = append(actions, h.Action)
		}
		// The rack claim creates the record; inspection fills it in.
		for _, want := range []string{"racked", "updated", "install issued", "phoned home", "state"} {
			require.Contains(t, actions, want, "%s history %v", e.Serial, actions)
		}
		require.Equal(t, "installed", a.State)

		// The Web UI shows history to everyone: no password in it.
		h := historyText(t, f.temporal, "server/"+e.Serial)
		require.True(t, strings.Contains(h, `"credentialRef":"cred-`), "%s: the credential travels as a reference", e.Serial)
		require.True(t, strings.Contains(h, e.Address), "%s: the history text holds decoded payloads", e.Serial)
		require.False(t, strings.Contains(h, e.Password), "%s: the BMC password leaked into workflow history", e.Serial)
	}
	require.Len(t, vendors, 4, "mixed fleet covers every simulated vendor")

	// Prometheus discovers every BMC.
	r := do(t, http.MethodGet, f.api+"/api/v1/sd/targets", "")
	require.Equal(t, http.StatusOK, r.code)
	var groups []struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	r.json(t, &groups)
	require.Len(t, groups, 5)
	require.Equal(t, "R03", groups[0].Labels["rack"])

	// Listing by state answers from visibility.
	eventually(t, 20*time.Second, "list installed", func() error {
		r := do(t, http.MethodGet, f.api+"/api/v1/servers?state=installed&rack=R03", "")
		var list struct{ Servers []struct{ Serial string } }
		r.json(t, &list)
		if len(list.Servers) != 5 {
			return fmt.Errorf("%d servers listed", len(list.Servers))
		}
		return nil
	})
	// A finished install never hands the host an installer again.
	r = do(t, http.MethodGet, f.api+"/boot/ipxe?mac="+f.fleet[0].MACs[0], "")
	require.Equal(t, http.StatusOK, r.code)
	require.Contains(t, string(r.body), "booting from local disk")
}

func waitStateWithin(t *testing.T, api, serial, state string, timeout time.Duration) serverStatus {
	t.Helper()
	var st serverStatus
	eventually(t, timeout, serial+" reaches "+state, func() error {
		st = getServer(t, api, serial)
		if st.State != state {
			return fmt.Errorf("state %s at step %s (attention %+v)", st.State, st.Step, st.Attention)
		}
		return nil
	})
	return st
}

func TestLifecycleAttentionsRecover(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "huge.yaml"), []byte("name: huge\nminimum: {drives: 64}\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "impatient.yaml"),
		[]byte("name: impatient\nraid: {logical_disks: [{size_gb: MAX, raid_level: \"1\", is_root_volume: true}]}\ninstall: {timeout: 1s, attempts: 1}\n"), 0o644))
	f := startFleet(t, 4, "--profiles", dir)
	loc := func(unit int) *serverapi.Location {
		return &serverapi.Location{Site: "dc1", Rack: "R04", Unit: unit, Face: "front"}
	}
	wrongPW, mismatch, slow, doomed := f.fleet[0], f.fleet[1], f.fleet[2], f.fleet[3]
	f.register(t, wrongPW, "not-the-password", "", loc(1))
	f.register(t, mismatch, mismatch.Password, "huge", loc(2))
	f.register(t, slow, slow.Password, "impatient", loc(3))
	f.register(t, doomed, doomed.Password, "huge", loc(4))

	// Wrong credentials: parked at inspection, not retried forever.
	st := waitState(t, f.api, wrongPW.Serial, serverapi.StateAttention)
	require.Equal(t, serverapi.StepInspect, st.Attention.Step)
	require.Contains(t, st.Attention.Error, "credential")
	require.False(t, st.Attention.Skippable)
	r := do(t, http.MethodPost, f.api+"/api/v1/servers/"+wrongPW.Serial+"/skip", "")
	require.Equal(t, http.StatusConflict, r.code, "inspection cannot be skipped")
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+wrongPW.Serial+"/retry",
		fmt.Sprintf(`{"bmc":{"username":%q,"password":%q}}`, wrongPW.Username, wrongPW.Password))
	require.Equal(t, http.StatusOK, r.code, string(r.body))

	// Inventory mismatch: retried with the profile that fits.
	st = waitState(t, f.api, mismatch.Serial, serverapi.StateAttention)
	require.Contains(t, st.Attention.Error, "profile needs 64")
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+mismatch.Serial+"/retry", `{"profile":"nope"}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.code)
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+mismatch.Serial+"/retry", `{"profile":"default"}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))

	// An install that never phones home in time: attention, then retried
	// with a patient profile, which starts again from inspection.
	st = waitStateWithin(t, f.api, slow.Serial, serverapi.StateAttention, 2*time.Minute)
	require.Equal(t, serverapi.StepInstallOS, st.Attention.Step)
	require.Contains(t, st.Attention.Error, "did not phone home")
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+slow.Serial+"/retry", `{"profile":"default"}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))

	// Abort frees the rack unit and marks the asset.
	waitState(t, f.api, doomed.Serial, serverapi.StateAttention)
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+doomed.Serial+"/abort", `{}`)
	require.Equal(t, http.StatusBadRequest, r.code, "an abort needs a reason")
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+doomed.Serial+"/abort", `{"reason":"wrong model delivered"}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	waitState(t, f.api, doomed.Serial, serverapi.StateAborted)
	a := getAssetView(t, f.api, doomed.Serial)
	require.Equal(t, "aborted", a.State)
	require.Nil(t, a.Placement)
	r = do(t, http.MethodGet, f.api+"/api/v1/racks/dc1/R04", "")
	var rack struct{ Units []struct{ Unit int } }
	r.json(t, &rack)
	for _, u := range rack.Units {
		require.NotEqual(t, 4, u.Unit, "the aborted server's unit is free")
	}
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+doomed.Serial+"/retry", `{}`)
	require.Equal(t, http.StatusConflict, r.code, "nothing to retry after an abort")

	for _, e := range []fleetEntry{wrongPW, mismatch, slow} {
		waitStateWithin(t, f.api, e.Serial, serverapi.StateInstalled, 3*time.Minute)
		b := f.bmc(t, e.ID)
		require.Equal(t, 1, b.Counters["volumes_created"], "%s: a retried lifecycle builds its volume once", e.Serial)
		require.Len(t, b.Volumes, 1)
		require.True(t, b.Host.OSInstalled)
	}
	// The impatient first attempt was cut short by the second; only one
	// installer phoned home, and with the second attempt's token.
	require.Equal(t, 1, f.bmc(t, slow.ID).Counters["phone_homes"])
	st = getServer(t, f.api, slow.Serial)
	require.Equal(t, 2, st.InstallAttempt)
}

// TestLifecycleSurvivesWorkerKills kills -9 the lifecycle worker while a
// server's BIOS is being applied and again while servers wait for their
// installers: every server still ends installed, and the simulator counts
// no duplicate side effect.
func TestLifecycleSurvivesWorkerKills(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "fleet.json")
	admin := freeAddr(t)
	s := startDev(t, "--data", filepath.Join(dir, "data"), "--workers=false", "--sim-servers", "3", "--sim-vendor", "mixed",
		"--sim-speed", "20", "--sim-manifest", manifest, "--sim-admin", admin)
	raw, err := os.ReadFile(manifest)
	require.NoError(t, err)
	f := &fleetStack{devStack: s, admin: "http://" + admin}
	require.NoError(t, json.Unmarshal(raw, &f.fleet))

	workerArgs := []string{"worker", "--temporal", s.temporal, "--metrics", "",
		"--inventory-db", filepath.Join(dir, "data", "metalflow.db"),
		"--credentials-key", filepath.Join(dir, "data", "credentials.key"), "--bmc-insecure"}
	worker := startProcess(t, "worker-1", workerArgs...)
	for i, e := range f.fleet {
		f.register(t, e, e.Password, "", &serverapi.Location{Site: "dc1", Rack: "R06", Unit: i + 1, Face: "front"})
	}

	// Kill while a server's BIOS or RAID is being configured: whichever of
	// the three is there first (each step lasts well under a second here).
	eventually(t, 60*time.Second, "a server configuring its BIOS or RAID", func() error {
		for _, e := range f.fleet {
			st, err := tryServer(t, s.api, e.Serial)
			if err == nil && (st.Step == serverapi.StepConfigureBIOS || st.Step == serverapi.StepConfigureRAID) {
				return nil
			}
		}
		return fmt.Errorf("none configuring yet")
	})
	worker.kill()
	worker = startProcess(t, "worker-2", workerArgs...)

	// Kill while servers wait for their installers to phone home.
	eventually(t, 90*time.Second, "a server installs", func() error {
		for _, e := range f.fleet {
			// Queries need a worker: while one restarts, the API says 503.
			if st, err := tryServer(t, s.api, e.Serial); err == nil && st.Step == serverapi.StepInstallOS {
				return nil
			}
		}
		return fmt.Errorf("none installing yet")
	})
	worker.kill()
	time.Sleep(2 * time.Second) // installers phone home while no worker runs
	startProcess(t, "worker-3", workerArgs...)

	for _, e := range f.fleet {
		var st serverStatus
		eventually(t, 3*time.Minute, e.Serial+" installed", func() error {
			var err error
			st, err = tryServer(t, s.api, e.Serial)
			if err == nil && st.State != serverapi.StateInstalled {
				err = fmt.Errorf("state %s at %s (attention %+v)", st.State, st.Step, st.Attention)
			}
			return err
		})
		require.Equal(t, 1, st.InstallAttempt, "%s: no install attempt was lost", e.Serial)
		b := f.bmc(t, e.ID)
		require.Equal(t, 1, b.Counters["bios_applies"], "%s applied its BIOS once", e.Serial)
		require.Equal(t, 1, b.Counters["volumes_created"], "%s built one volume", e.Serial)
		require.Len(t, b.Volumes, 1, e.Serial)
		require.Equal(t, 1, b.Counters["netboots"], "%s netbooted once", e.Serial)
		require.Equal(t, 1, b.Counters["phone_homes"], "%s phoned home once", e.Serial)
		// One power-on for the BIOS reset, one restart into the installer.
		require.LessOrEqual(t, b.Counters["power_ons"], 2, "%s was not reset twice", e.Serial)
		a := getAssetView(t, s.api, e.Serial)
		require.Equal(t, "installed", a.State)
	}
}

// tryServer is getServer for moments when no worker may be there to answer.
func tryServer(t *testing.T, api, serial string) (serverStatus, error) {
	t.Helper()
	r := do(t, http.MethodGet, api+"/api/v1/servers/"+serial, "")
	if r.code != http.StatusOK {
		return serverStatus{}, fmt.Errorf("GET %s: %d %s", serial, r.code, r.body)
	}
	var st serverStatus
	r.json(t, &st)
	return st, nil
}

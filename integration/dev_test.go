package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// devStack is a running `metalflow dev` with its addresses.
type devStack struct {
	proc     *process
	api      string // http://test:<admin token>@host:port
	token    string // the admin token dev printed
	webUI    string // http://host:port
	temporal string // host:port
}

func startDev(t *testing.T, extra ...string) *devStack {
	t.Helper()
	return launchDev(t, "", extra...)
}

// restartDev starts dev again on state that already has its admin token,
// which a restart must not print again.
func restartDev(t *testing.T, token string, extra ...string) *devStack {
	t.Helper()
	s := launchDev(t, token, extra...)
	b, err := os.ReadFile(s.proc.log)
	require.NoError(t, err)
	require.NotContains(t, string(b), "admin token:", "the admin token is printed once, at the first start")
	return s
}

func launchDev(t *testing.T, token string, extra ...string) *devStack {
	t.Helper()
	s := &devStack{temporal: freeAddr(t)}
	httpAddr, uiAddr := freeAddr(t), freeAddr(t)
	s.webUI = "http://" + uiAddr
	args := append([]string{"dev",
		"--temporal-listen", s.temporal,
		"--temporal-ui", uiAddr,
		"--http", httpAddr,
	}, extra...)
	s.proc = startProcess(t, "dev", args...)
	// The first start creates the SQLite schema; allow for a loaded machine.
	waitHTTP(t, "http://"+httpAddr+"/readyz", http.StatusOK, 90*time.Second)
	s.token = token
	if s.token == "" {
		s.token = s.proc.adminToken(t)
	}
	s.api = apiURL(httpAddr, s.token)
	return s
}

func temporalClient(t *testing.T, hostPort string) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: hostPort, Namespace: "default"})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func countLifecycles(t *testing.T, c client.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s'", serverapi.ServerLifecycleName),
	})
	require.NoError(t, err)
	return res.GetCount()
}

type serverStatus struct {
	serverapi.ServerStatus
	WorkflowID  string `json:"workflowId"`
	TemporalURL string `json:"temporalUrl"`
}

func getServer(t *testing.T, api, serial string) serverStatus {
	t.Helper()
	r := do(t, http.MethodGet, api+"/api/v1/servers/"+serial, "")
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	var st serverStatus
	r.json(t, &st)
	return st
}

// waitState polls a server until it reaches state.
func waitState(t *testing.T, api, serial, state string) serverStatus {
	t.Helper()
	var st serverStatus
	eventually(t, 60*time.Second, serial+" reaches "+state, func() error {
		st = getServer(t, api, serial)
		if st.State != state {
			return fmt.Errorf("state %s at step %s (attention %+v)", st.State, st.Step, st.Attention)
		}
		return nil
	})
	return st
}

func TestDevEphemeralServesAPIMetricsAndWebUI(t *testing.T) {
	s := startDev(t, "--ephemeral")
	tc := temporalClient(t, s.temporal)

	r := do(t, http.MethodGet, s.api+"/healthz", "")
	require.Equal(t, http.StatusOK, r.code)

	// A server is registered once; a second POST is a conflict, not a run.
	r = do(t, http.MethodPost, s.api+"/api/v1/servers", `{"serial":"SN-EPH-1"}`)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	var created struct{ Serial, WorkflowID, RunID string }
	r.json(t, &created)
	require.Equal(t, "SN-EPH-1", created.Serial)
	require.Equal(t, "server/SN-EPH-1", created.WorkflowID)
	require.NotEmpty(t, created.RunID)

	r = do(t, http.MethodPost, s.api+"/api/v1/servers", `{"serial":"SN-EPH-1"}`)
	require.Equal(t, http.StatusConflict, r.code)
	require.Contains(t, r.errorMessage(t), "already has a lifecycle")
	require.EqualValues(t, 1, countLifecycles(t, tc))

	eventually(t, 20*time.Second, "lifecycle waits for racked", func() error {
		st := getServer(t, s.api, "SN-EPH-1")
		if st.State != serverapi.StateWaitingRack || st.Steps[0].Status != stepapi.StepWaiting {
			return fmt.Errorf("state %s, step %+v", st.State, st.Steps)
		}
		return nil
	})
	st := getServer(t, s.api, "SN-EPH-1")
	require.Equal(t, "Rack", st.Step)
	require.Equal(t, created.RunID, st.RunID)
	require.Equal(t, s.webUI+"/namespaces/default/workflows/server%2FSN-EPH-1/"+created.RunID+"/history", st.TemporalURL)
	// The link lands on the Web UI's page for the run.
	r = do(t, http.MethodGet, st.TemporalURL, "")
	require.Equal(t, http.StatusOK, r.code)

	r = do(t, http.MethodGet, s.api+"/api/v1/servers/SN-UNKNOWN", "")
	require.Equal(t, http.StatusNotFound, r.code)
	require.Contains(t, r.errorMessage(t), "no server SN-UNKNOWN")

	// One registry: the API's own series and the Temporal SDK's.
	r = do(t, http.MethodGet, s.api+"/metrics", "")
	require.Equal(t, http.StatusOK, r.code)
	metrics := string(r.body)
	for _, want := range []string{
		`http_requests_total{code="202",method="POST",route="/api/v1/servers"} 1`,
		`http_requests_total{code="409",method="POST",route="/api/v1/servers"} 1`,
		"temporal_request_total{",
		// Prometheus label values are sanitized: '-' becomes '_'.
		`task_queue="metalflow_lifecycle"`,
		"go_goroutines ",
	} {
		require.True(t, strings.Contains(metrics, want), "/metrics lacks %s", want)
	}

	// The Temporal Web UI lists the run, and filters by our search attribute.
	r = do(t, http.MethodGet, s.webUI+"/", "")
	require.Equal(t, http.StatusOK, r.code)
	require.Contains(t, strings.ToLower(string(r.body)), "<html")
	q := url.Values{"query": {`ServerSerial = "SN-EPH-1"`}}
	eventually(t, 20*time.Second, "Web UI lists the workflow", func() error {
		r := do(t, http.MethodGet, s.webUI+"/api/v1/namespaces/default/workflows?"+q.Encode(), "")
		if r.code != http.StatusOK {
			return fmt.Errorf("status %d: %.300s", r.code, r.body)
		}
		var list struct {
			Executions []struct {
				Execution struct {
					WorkflowID string `json:"workflowId"`
				} `json:"execution"`
			} `json:"executions"`
		}
		r.json(t, &list)
		if len(list.Executions) != 1 || list.Executions[0].Execution.WorkflowID != "server/SN-EPH-1" {
			return fmt.Errorf("executions: %+v", list.Executions)
		}
		return nil
	})
}

func TestDevRejectsBadInputAndStartsNothing(t *testing.T) {
	s := startDev(t, "--ephemeral")
	tc := temporalClient(t, s.temporal)
	long := strings.Repeat("x", 300)
	cases := []struct {
		name, body, want string
	}{
		{"malformed JSON", `{"serial":`, "invalid JSON body"},
		{"not JSON", `serial=abc`, "invalid JSON body"},
		{"empty body", ``, "body is empty"},
		{"array", `["SN-1"]`, "expected a JSON object"},
		{"missing serial", `{}`, "serial is required"},
		{"empty serial", `{"serial":""}`, "serial is required"},
		{"serial with spaces", `{"serial":"SN 0001"}`, "may contain only"},
		{"300-character serial", `{"serial":"` + long + `"}`, "300 characters long"},
		{"serial of wrong type", `{"serial":42}`, `field "serial" must be string`},
		{"unknown field", `{"serial":"SN-OK","colour":"red"}`, `unknown field "colour"`},
		{"two objects", `{"serial":"SN-A"}{"serial":"SN-B"}`, "unexpected data after"},
		{"bad location", `{"serial":"SN-LOC","location":{"site":"dc1","rack":"R01","unit":0,"face":"front"}}`, "unit must be 1 or more"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, http.MethodPost, s.api+"/api/v1/servers", c.body)
			require.Equal(t, http.StatusBadRequest, r.code, string(r.body))
			require.Contains(t, r.errorMessage(t), c.want)
		})
	}
	r := do(t, http.MethodGet, s.api+"/api/v1/servers/bad%20serial", "")
	require.Equal(t, http.StatusBadRequest, r.code)
	require.Contains(t, r.errorMessage(t), "may contain only")
	require.EqualValues(t, 0, countLifecycles(t, tc), "bad input must start nothing")

	// A racked update with a bad location is refused and changes nothing.
	r = do(t, http.MethodPost, s.api+"/api/v1/servers", `{"serial":"SN-RACK"}`)
	require.Equal(t, http.StatusAccepted, r.code)
	for _, body := range []string{
		`{"site":"dc1","rack":"R01","unit":-1,"face":"front"}`,
		`{"site":"","rack":"R01","unit":4,"face":"front"}`,
		`{"site":"dc1","rack":"R01","unit":4,"face":"sideways"}`,
	} {
		r = do(t, http.MethodPost, s.api+"/api/v1/servers/SN-RACK/racked", body)
		require.Equal(t, http.StatusUnprocessableEntity, r.code, body)
		r.errorMessage(t)
	}
	r = do(t, http.MethodPost, s.api+"/api/v1/servers/SN-RACK/racked", `{"site":"dc1"`)
	require.Equal(t, http.StatusBadRequest, r.code)
	st := getServer(t, s.api, "SN-RACK")
	require.Equal(t, serverapi.StateWaitingRack, st.State)
	require.Nil(t, st.Location)

	r = do(t, http.MethodPost, s.api+"/api/v1/servers/SN-NOBODY/racked", `{"site":"dc1","rack":"R01","unit":4,"face":"front"}`)
	require.Equal(t, http.StatusNotFound, r.code)
	require.EqualValues(t, 1, countLifecycles(t, tc))
}

func TestDevKeepsWaitingWorkflowAcrossRestart(t *testing.T) {
	dataDir := t.TempDir()
	s := startDev(t, "--data", dataDir)
	r := do(t, http.MethodPost, s.api+"/api/v1/servers", `{"serial":"SN-PERSIST"}`)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	eventually(t, 20*time.Second, "lifecycle waits for racked", func() error {
		if st := getServer(t, s.api, "SN-PERSIST"); st.State != serverapi.StateWaitingRack || st.Steps[0].Status != stepapi.StepWaiting {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
	s.proc.stop()
	require.True(t, s.proc.exitedCleanly(), "dev must exit cleanly on SIGTERM")

	// Same data dir, fresh ports: the run must still be there and waiting.
	s2 := restartDev(t, s.token, "--data", dataDir)
	st := getServer(t, s2.api, "SN-PERSIST")
	require.Equal(t, serverapi.StateWaitingRack, st.State)
	require.Equal(t, stepapi.StepWaiting, st.Steps[0].Status)
	r = do(t, http.MethodPost, s2.api+"/api/v1/servers", `{"serial":"SN-PERSIST"}`)
	require.Equal(t, http.StatusConflict, r.code, "the restarted server must remember the serial")

	r = do(t, http.MethodPost, s2.api+"/api/v1/servers/SN-PERSIST/racked", `{"site":"dc1","room":"A","rack":"R05","unit":10,"face":"front"}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	// Registered without a BMC, the lifecycle racks it, records the asset,
	// and asks for a BMC at inspection.
	st = waitState(t, s2.api, "SN-PERSIST", serverapi.StateAttention)
	require.Equal(t, &serverapi.Location{Site: "dc1", Room: "A", Rack: "R05", Unit: 10, Face: "front"}, st.Location)
	require.Equal(t, stepapi.StepDone, st.Steps[0].Status)
	require.Equal(t, serverapi.StepInspect, st.Attention.Step)

	// The location is searchable in the Web UI after the restart too.
	tc := temporalClient(t, s2.temporal)
	eventually(t, 20*time.Second, "visibility has the rack", func() error {
		res, err := tc.CountWorkflow(context.Background(), &workflowservice.CountWorkflowExecutionsRequest{
			Query: `Rack = "R05" AND ServerSerial = "SN-PERSIST" AND LifecycleState = "attention" AND LifecycleStep = "Inspect"`,
		})
		if err != nil {
			return err
		}
		if res.GetCount() != 1 {
			return fmt.Errorf("count %d", res.GetCount())
		}
		return nil
	})
}

func TestProductionRolesAgainstExternalTemporal(t *testing.T) {
	// `dev --workers=false` stands in for an external Temporal cluster; the
	// api and worker subcommands run as separate processes, as in production.
	// Both roles share one CMDB, as they share PostgreSQL in production,
	// and it is the one the namespace acts on: dev's.
	dir := t.TempDir()
	s := startDev(t, "--data", dir, "--workers=false")
	apiAddr, metricsAddr := freeAddr(t), freeAddr(t)
	inv := filepath.Join(dir, "metalflow.db")
	layout := filepath.Join(dir, "layout.yaml")
	require.NoError(t, os.WriteFile(layout, []byte("sites: [{name: dc1}]\nracks:\n  - {site: dc1, room: A, name: R02, heightU: 42}\n"), 0o644))
	key := filepath.Join(dir, "credentials.key")
	startProcess(t, "worker", "worker", "--temporal", s.temporal, "--metrics", metricsAddr, "--inventory-db", inv, "--layout", layout, "--credentials-key", key)
	startProcess(t, "api", "api", "--temporal", s.temporal, "--http", apiAddr, "--temporal-ui-url", s.webUI, "--inventory-db", inv, "--credentials-key", key)
	waitHTTP(t, "http://"+apiAddr+"/readyz", http.StatusOK, 30*time.Second)
	// One inventory, one set of tokens: dev's admin token works on the api.
	api := apiURL(apiAddr, s.token)

	r := do(t, http.MethodPost, api+"/api/v1/servers", `{"serial":"SN-PROD"}`)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	r = do(t, http.MethodPost, api+"/api/v1/servers/SN-PROD/racked", `{"site":"dc1","rack":"R02","unit":7,"face":"rear"}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	// The separate worker runs the steps up to inspection, which asks for a BMC.
	waitState(t, api, "SN-PROD", serverapi.StateAttention)
	// Racked once: a second racked is a conflict, not a silent success.
	r = do(t, http.MethodPost, api+"/api/v1/servers/SN-PROD/racked", `{"site":"dc1","rack":"R02","unit":8,"face":"rear"}`)
	require.Equal(t, http.StatusConflict, r.code, string(r.body))

	r = do(t, http.MethodGet, "http://"+metricsAddr+"/metrics", "")
	require.Equal(t, http.StatusOK, r.code)
	require.True(t, strings.Contains(string(r.body), `activity_type="RackServer"`), "worker /metrics lacks its activities")
}

func TestAPIReportsNotReadyWithoutTemporal(t *testing.T) {
	apiAddr := freeAddr(t)
	// Nothing listens on this address: Temporal is "down".
	dir := t.TempDir()
	apiProc := startProcess(t, "api", "api", "--temporal", freeAddr(t), "--http", apiAddr, "--inventory-db", filepath.Join(dir, "inv.db"), "--credentials-key", filepath.Join(dir, "key"))
	waitHTTP(t, "http://"+apiAddr+"/healthz", http.StatusOK, 20*time.Second)
	api := apiURL(apiAddr, apiProc.adminToken(t))
	r := do(t, http.MethodGet, api+"/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, r.code)
	require.Contains(t, r.errorMessage(t), "temporal not reachable")
	r = do(t, http.MethodPost, api+"/api/v1/servers", `{"serial":"SN-DOWN"}`)
	require.Equal(t, http.StatusServiceUnavailable, r.code, string(r.body))
}

func TestRackingChecksTheInventory(t *testing.T) {
	s := startDev(t, "--ephemeral")
	for _, serial := range []string{"SN-R1", "SN-R2"} {
		r := do(t, http.MethodPost, s.api+"/api/v1/servers", `{"serial":"`+serial+`"}`)
		require.Equal(t, http.StatusAccepted, r.code)
	}
	// dev seeds dc1 with R01-R20 of 42 U.
	r := do(t, http.MethodGet, s.api+"/api/v1/racks?site=dc1", "")
	require.Equal(t, http.StatusOK, r.code)
	var list struct{ Racks []struct{ Name string } }
	r.json(t, &list)
	require.Len(t, list.Racks, 20)

	r = do(t, http.MethodPost, s.api+"/api/v1/servers/SN-R1/racked", `{"site":"dc1","room":"A","rack":"R05","unit":20,"face":"front"}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))

	cases := []struct {
		name, body string
		code       int
		want       string
	}{
		{"unit taken", `{"site":"dc1","rack":"R05","unit":20,"face":"front"}`, http.StatusConflict, "holds server SN-R1"},
		{"above the rack", `{"site":"dc1","rack":"R05","unit":43,"face":"front"}`, http.StatusUnprocessableEntity, "units 1-42"},
		{"unknown site", `{"site":"dc9","rack":"R05","unit":1,"face":"front"}`, http.StatusUnprocessableEntity, `unknown site "dc9"`},
		{"unknown rack", `{"site":"dc1","rack":"R99","unit":1,"face":"front"}`, http.StatusUnprocessableEntity, `unknown rack "R99"`},
		{"wrong room", `{"site":"dc1","room":"B","rack":"R05","unit":1,"face":"front"}`, http.StatusUnprocessableEntity, `in room "A"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, http.MethodPost, s.api+"/api/v1/servers/SN-R2/racked", c.body)
			require.Equal(t, c.code, r.code, string(r.body))
			require.Contains(t, r.errorMessage(t), c.want)
		})
	}
	st := getServer(t, s.api, "SN-R2")
	require.Equal(t, serverapi.StateWaitingRack, st.State, "refused racking changes nothing")

	r = do(t, http.MethodGet, s.api+"/api/v1/racks/dc1/R05", "")
	require.Equal(t, http.StatusOK, r.code)
	var rack struct {
		HeightU int `json:"heightU"`
		Units   []struct {
			Unit   int
			Serial string
		}
	}
	r.json(t, &rack)
	require.Equal(t, 42, rack.HeightU)
	require.Len(t, rack.Units, 1)
	require.Equal(t, "SN-R1", rack.Units[0].Serial)
	require.Equal(t, 20, rack.Units[0].Unit)

	// A racked repeated with its Idempotency-Key (as after a 503 that could
	// not say whether it took effect) answers the first outcome; without
	// the key, or with another body, it is the conflict it always was.
	key := http.Header{"Idempotency-Key": {"rack-sn-r2-1"}}
	at22 := `{"site":"dc1","room":"A","rack":"R05","unit":22,"face":"front"}`
	first := doWithHeader(t, http.MethodPost, s.api+"/api/v1/servers/SN-R2/racked", at22, key)
	require.Equal(t, http.StatusOK, first.code, string(first.body))
	again := doWithHeader(t, http.MethodPost, s.api+"/api/v1/servers/SN-R2/racked", at22, key)
	require.Equal(t, http.StatusOK, again.code, string(again.body))
	require.JSONEq(t, string(first.body), string(again.body))
	r = do(t, http.MethodPost, s.api+"/api/v1/servers/SN-R2/racked", at22)
	require.Equal(t, http.StatusConflict, r.code, string(r.body))
	r = doWithHeader(t, http.MethodPost, s.api+"/api/v1/servers/SN-R2/racked", `{"site":"dc1","room":"A","rack":"R05","unit":23,"face":"front"}`, key)
	require.Equal(t, http.StatusConflict, r.code, string(r.body))
	r = doWithHeader(t, http.MethodPost, s.api+"/api/v1/servers/SN-R2/racked", at22, http.Header{"Idempotency-Key": {"not a key"}})
	require.Equal(t, http.StatusBadRequest, r.code, string(r.body))
	r = do(t, http.MethodGet, s.api+"/api/v1/racks/dc1/R05", "")
	r.json(t, &rack)
	require.Len(t, rack.Units, 2, "SN-R2 holds one unit, racked once")

	// Registering a server already racked claims its unit too.
	r = do(t, http.MethodPost, s.api+"/api/v1/servers", `{"serial":"SN-R3","location":{"site":"dc1","rack":"R05","unit":20,"face":"rear"}}`)
	require.Equal(t, http.StatusConflict, r.code, string(r.body))
	r = do(t, http.MethodPost, s.api+"/api/v1/servers", `{"serial":"SN-R3","location":{"site":"dc1","rack":"R05","unit":21,"face":"rear"}}`)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	st = waitState(t, s.api, "SN-R3", serverapi.StateAttention)
	require.Equal(t, 21, st.Location.Unit)

	// New racks through the API; a conflicting definition is refused.
	r = do(t, http.MethodPost, s.api+"/api/v1/racks", `{"site":"dc1","room":"B","name":"R21","heightU":48}`)
	require.Equal(t, http.StatusCreated, r.code, string(r.body))
	r = do(t, http.MethodPost, s.api+"/api/v1/racks", `{"site":"dc1","room":"C","name":"R21","heightU":42}`)
	require.Equal(t, http.StatusConflict, r.code)
	r = do(t, http.MethodPost, s.api+"/api/v1/racks", `{"site":"dc1","name":"R22","heightU":99}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.code)
	r = do(t, http.MethodPost, s.api+"/api/v1/racks", `{"site":"dc1","name":"bad name","heightU":42}`)
	require.Equal(t, http.StatusBadRequest, r.code)
}

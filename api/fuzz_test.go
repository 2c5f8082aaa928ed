package api

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// temporalCall is one call the API made into Temporal.
type temporalCall struct {
	method     string
	workflowID string
	update     string
	args       []any
}

// refusingTemporal stands in for a Temporal cluster that is down: it
// records what the API asked and answers every start, query and update
// with Unavailable (503), and says no workflow exists. The fuzz needs no
// cluster, and a request that reaches Temporal is visible, so it can be
// checked for having passed validation first. Calls it does not expect
// hit the nil embedded client and panic: the fuzz then fails loudly.
type refusingTemporal struct {
	client.Client
	mu    sync.Mutex
	calls []temporalCall
}

func (r *refusingTemporal) record(c temporalCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

// take returns the calls since the last take.
func (r *refusingTemporal) take() []temporalCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	calls := r.calls
	r.calls = nil
	return calls
}

func (r *refusingTemporal) DescribeWorkflowExecution(_ context.Context, id, _ string) (*workflowservice.DescribeWorkflowExecutionResponse, error) {
	r.record(temporalCall{method: "describe", workflowID: id})
	return nil, serviceerror.NewNotFound("fuzz: no workflow " + id)
}

func (r *refusingTemporal) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, _ any, args ...any) (client.WorkflowRun, error) {
	r.record(temporalCall{method: "start", workflowID: o.ID, args: args})
	return nil, serviceerror.NewUnavailable("fuzz: Temporal is down")
}

func (r *refusingTemporal) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	r.record(temporalCall{method: "update", workflowID: o.WorkflowID, update: o.UpdateName, args: o.Args})
	return nil, serviceerror.NewUnavailable("fuzz: Temporal is down")
}

func (r *refusingTemporal) QueryWorkflow(_ context.Context, id, _, _ string, _ ...any) (converter.EncodedValue, error) {
	r.record(temporalCall{method: "query", workflowID: id})
	return nil, serviceerror.NewUnavailable("fuzz: Temporal is down")
}

// fuzzRoute is a request with a body; {p} is replaced by the fuzzed path
// parameter (or def when that is empty).
type fuzzRoute struct {
	method, path, def string
}

func fuzzRoutes() []fuzzRoute {
	return []fuzzRoute{
		{http.MethodPost, "/api/v1/racks", ""},
		{http.MethodPost, "/api/v1/tokens", ""},
		{http.MethodPost, "/api/v1/session", ""},
		{http.MethodPost, "/api/v1/racks/dc1/{p}/servers", "R01"},
		{http.MethodPost, "/api/v1/servers", ""},
		{http.MethodPost, "/api/v1/vips", ""},
		{http.MethodPost, "/api/v1/servers/{p}/racked", "SN-1"},
		{http.MethodPost, "/api/v1/servers/{p}/retry", "SN-1"},
		{http.MethodPost, "/api/v1/servers/{p}/abort", "SN-1"},
		{http.MethodPost, "/api/v1/vips/{p}/backends", "web"},
		{http.MethodPost, "/api/v1/vips/{p}/reject", "web"},
		{http.MethodPost, "/api/v1/vips/{p}/approve", "web"},
	}
}

// adminTokenPlaceholder in a seed body becomes the admin token, so that a
// seed can sign in for real.
const adminTokenPlaceholder = "ADMIN-TOKEN"

// apiFuzzer is the real API on a real SQLite inventory with the dev racks,
// a real credential vault, and refusingTemporal.
type apiFuzzer struct {
	handler  http.Handler
	temporal *refusingTemporal
	db       *sql.DB
	admin    string
	clients  int
}

func newAPIFuzzer(f *testing.F) *apiFuzzer {
	ctx := context.Background()
	path := filepath.Join(f.TempDir(), "inv.db")
	inv, err := inventory.Open(ctx, inventory.DialectSQLite, path)
	require.NoError(f, err)
	f.Cleanup(func() { _ = inv.Close() })
	require.NoError(f, inv.ApplyLayout(ctx, inventory.DevLayout()))
	vault, err := credentials.NewVault(make([]byte, credentials.KeySize), inv)
	require.NoError(f, err)
	cat, err := profiles.NewCatalog()
	require.NoError(f, err)
	tc := &refusingTemporal{}
	s := New(Config{
		Temporal: tc, Inventory: inv, Credentials: vault, Profiles: cat, Tokens: &auth.Tokens{Store: inv},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler), Namespace: "default",
		// The seeds' BMCs are a simulated fleet's, on loopback; names the
		// fuzzer makes up resolve nowhere rather than in the host's DNS.
		BMC: BMCConfig{AllowLoopback: true, Resolver: namesFor{}},
	})
	// A second connection to count rows: what the API changed, seen from
	// outside it.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	require.NoError(f, err)
	f.Cleanup(func() { _ = db.Close() })
	plain, _, err := (&auth.Tokens{Store: inv}).Issue(ctx, auth.IssueInput{Name: "fuzz-admin", Role: auth.Admin, By: "fuzz"})
	require.NoError(f, err)
	return &apiFuzzer{handler: s.Handler(), temporal: tc, db: db, admin: plain}
}

// rows counts the rows of every inventory table but the audit log, which
// records refused calls too, by design.
func (a *apiFuzzer) rows(t *testing.T) map[string]int {
	t.Helper()
	names, err := a.db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'audit_log'`)
	require.NoError(t, err)
	var tables []string
	for names.Next() {
		var n string
		require.NoError(t, names.Scan(&n))
		tables = append(tables, n)
	}
	require.NoError(t, names.Err())
	require.NoError(t, names.Close())
	counts := map[string]int{}
	for _, n := range tables {
		var c int
		require.NoError(t, a.db.QueryRow(`SELECT count(*) FROM "`+n+`"`).Scan(&c))
		counts[n] = c
	}
	return counts
}

// serve sends one request as the admin from its own client address, so
// the sign-in rate limit does not turn every session attempt into a 429.
func (a *apiFuzzer) serve(method, target string, body []byte) *httptest.ResponseRecorder {
	a.clients++
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:40000", a.clients>>16&255, a.clients>>8&255, a.clients&255)
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	req.Header.Set(echo.HeaderAuthorization, "Bearer "+a.admin)
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, req)
	return rec
}

// checkReachedTemporalValidated fails unless what the API handed Temporal
// passes the workflows' own validators: bad input must be refused before.
func checkReachedTemporalValidated(t *testing.T, calls []temporalCall) {
	t.Helper()
	for _, c := range calls {
		switch c.method {
		case "describe", "query":
			continue
		}
		if len(c.args) != 1 {
			t.Fatalf("%s %s with %d arguments", c.method, c.workflowID, len(c.args))
		}
		var err error
		switch in := c.args[0].(type) {
		case serverapi.ServerLifecycleInput:
			err = stepapi.ValidateSerial(in.Serial)
			if err == nil {
				err = serverapi.ValidateTenant(in.Tenant)
			}
			if err == nil {
				err = serverapi.ValidatePools(in.Pools)
			}
			if err == nil && in.Location != nil {
				err = serverapi.ValidateLocation(*in.Location)
			}
			if err == nil {
				err = profiles.ValidateSSHAuthorizedKeys(in.SSHAuthorizedKeys)
			}
			if err == nil {
				err = profiles.ValidateUserData(in.UserData)
			}
			if err == nil && c.workflowID != serverapi.LifecycleWorkflowID(in.Serial) {
				err = fmt.Errorf("workflow ID %q", c.workflowID)
			}
		case batchapi.RackBatchInput:
			err = batchapi.ValidateRackBatch(in)
		case vipapi.VIPRolloutInput:
			err = vipapi.ValidateVIPInput(in)
		case serverapi.RackedInput:
			err = serverapi.ValidateLocation(in.Location)
		}
		if err != nil {
			t.Fatalf("%s %s %s reached Temporal with input that fails validation: %v", c.method, c.workflowID, c.update, err)
		}
		// IDs come from validated names, so no path parameter can reach
		// another kind of workflow.
		kind, _, _ := strings.Cut(c.workflowID, "/")
		if kind != "server" && kind != "vip" && kind != "rack" || strings.Contains(c.workflowID, "//") ||
			strings.IndexFunc(c.workflowID, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/", r))
			}) >= 0 {
			t.Fatalf("%s reached Temporal for workflow %q", c.method, c.workflowID)
		}
	}
}

func FuzzAPIBodies(f *testing.F) {
	a := newAPIFuzzer(f)
	seeds := []struct {
		route uint8
		param string
		body  string
	}{
		{0, "", `{"site":"dc1","room":"B","name":"R99","heightU":42}`},
		{0, "", `{"site":"dc1","name":"R01","heightU":42}`},
		{0, "", `{"site":"dc9","name":"R01","heightU":42}`},
		{0, "", `{"site":"dc1","name":"../x","heightU":42}`},
		{0, "", `{"site":"dc1","name":"R98","heightU":-1}`},
		{0, "", `{"site":"dc1","name":"R97","heightU":1000000000000}`},
		{1, "", `{"name":"ci","role":"operator"}`},
		{1, "", `{"name":"cloud","role":"viewer","project":"p1"}`},
		{1, "", `{"name":"cloud","role":"admin","project":"p1"}`},
		{1, "", `{"name":"","role":"root"}`},
		{2, "", `{"token":"` + adminTokenPlaceholder + `"}`},
		{2, "", `{"token":"mf_nope"}`},
		{2, "", `{"token":""}`},
		{3, "", `{"servers":[{"serial":"SN-A","bmc":{"address":"https://127.0.0.1:9001","username":"root","password":"calvin"},"unit":1}]}`},
		{3, "", `{"servers":[{"serial":"SN-A","bmc":{"address":"https://127.0.0.1:9001","username":"root","password":"calvin"},"unit":1},{"serial":"SN-A","unit":1}]}`},
		{3, "R99", `{"servers":[{"serial":"SN-A","bmc":{"address":"ftp://x","username":"root","password":"calvin"},"unit":43,"face":"side"}],"attentionGrace":"-1h"}`},
		{3, "R/01", `{"servers":[]}`},
		{3, "", `{"servers":[{"serial":"SN-A","unit":1}],"concurrency":-1,"powerConcurrency":100000}`},
		{4, "", `{"serial":"SN-1"}`},
		{4, "", `{"serial":"SN-1","bmc":{"address":"https://10.0.0.1","username":"root","password":"calvin"},"location":{"site":"dc1","rack":"R01","unit":3,"face":"front"},"tenant":"p1","pools":["web"]}`},
		{4, "", `{"serial":"SN 1","profile":"nope","location":{"site":"dc1","rack":"R01","unit":0,"face":"side"},"pools":["web","web"]}`},
		{4, "", `{"serial":"SN-1","location":{"site":"dc1","rack":"R01","unit":43,"face":"front"}}`},
		{4, "", `{"serial":"SN-1","sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKv2oMjPcLITFgW6Mdmj3zGef2jF3wuncBd/8JOAXvHS x"],"userData":"#cloud-config\npackages: [htop]\n"}`},
		{4, "", `{"serial":"SN-1","sshAuthorizedKeys":["from=\"*\" ssh-rsa AAAA"],"userData":"#cloud-config\nphone_home: {}\n"}`},
		{4, "", `{"serial":"SN-1","bmc":{"address":"https://10.0.0.1/redfish","username":"","password":"x"}}`},
		{4, "", `{"serial":"SN-1","bmc":{"address":"https://169.254.169.254","username":"root","password":"calvin"},"location":{"site":"dc1","rack":"R01","unit":3,"face":"front"}}`},
		{4, "", `{"serial":"SN-1","bmc":{"address":"https://bmc.invalid","username":"root","password":"calvin"}}`},
		{3, "", `{"servers":[{"serial":"SN-A","bmc":{"address":"https://[::ffff:169.254.169.254]","username":"root","password":"calvin"},"unit":1}]}`},
		{7, "", `{"bmc":{"address":"https://0.0.0.0"}}`},
		{5, "", `{"name":"web","protocol":"tcp","ports":[80,443],"exposure":"internal","backends":[{"address":"10.0.0.1"}]}`},
		{5, "", `{"name":"web","port":80,"ports":[80],"exposure":"internal","servers":["SN-1"]}`},
		{5, "", `{"name":"Web","protocol":"icmp","ports":[0],"exposure":"galaxy","backends":[{"address":"::"}],"clusters":99}`},
		{5, "", `{"name":"web","protocol":"udp","port":53,"exposure":"public","backends":[{"address":"2001:db8::1","weight":7,"state":"drain"}],"healthCheck":{"kind":"tcp","path":"/x"}}`},
		{6, "", `{"site":"dc1","rack":"R01","unit":7,"face":"front"}`},
		{6, "", `{"site":"dc1","rack":"R01","unit":99,"face":"front"}`},
		{6, "SN/1", `{"site":"dc1","rack":"R01","unit":7,"face":"front"}`},
		{6, "", `{"site":"","rack":"R01","unit":0,"face":"up"}`},
		{7, "", `{"profile":"default","bmc":{"address":"https://10.0.0.2"}}`},
		{7, "", `{"bmc":{"username":"root","password":"new"}}`},
		{7, "", `{"profile":"nope"}`},
		{7, "", ``},
		{8, "", `{"reason":"wrong rack"}`},
		{9, "", `{"add":[{"address":"10.0.0.9"}],"remove":["10.0.0.1"]}`},
		{9, "", `{"add":[{"address":"10.0.0.9"}],"by":"mallory"}`},
		{9, "-web", `{}`},
		{10, "", `{"reason":"no"}`},
		{11, ``, ``},
		{11, ``, `{"by":"me"}`},
		{4, "", `{"serial":"SN-1"} {"serial":"SN-2"}`},
		{4, "", `{"serial":"SN-1","extra":1}`},
		{4, "", `[1,2]`},
		{4, "", `{"serial":`},
		{5, "", `null`},
	}
	for _, s := range seeds {
		f.Add(s.route, s.param, []byte(s.body))
	}
	routes := fuzzRoutes()
	f.Fuzz(func(t *testing.T, route uint8, param string, body []byte) {
		r := routes[int(route)%len(routes)]
		p := r.def
		if param != "" {
			p = url.PathEscape(param)
		}
		target := strings.ReplaceAll(r.path, "{p}", p)
		if _, err := url.ParseRequestURI(target); err != nil {
			return
		}
		body = bytes.ReplaceAll(body, []byte(adminTokenPlaceholder), []byte(a.admin))

		a.temporal.take()
		before := a.rows(t)
		rec := a.serve(r.method, target, body)
		after := a.rows(t)
		calls := a.temporal.take()
		code := rec.Code
		where := fmt.Sprintf("%s %s %q: %d %s", r.method, target, body, code, rec.Body.String())

		checkReachedTemporalValidated(t, calls)
		switch {
		case code == http.StatusServiceUnavailable:
			// Only input that passed validation may get as far as the
			// (refusing) Temporal, and only a credential may have been
			// stored on the way.
			if !reachedStartOrUpdate(calls) {
				t.Fatalf("503 without reaching Temporal: %s", where)
			}
			for table, n := range after {
				if n != before[table] && table != "secrets" {
					t.Fatalf("a request that never started changed %s (%d -> %d): %s", table, before[table], n, where)
				}
			}
		case code >= 500:
			t.Fatalf("server error: %s", where)
		case code >= 400:
			if reachedStartOrUpdate(calls) {
				t.Fatalf("refused after reaching Temporal: %s", where)
			}
			var e httpx.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("4xx without a JSON error: %s", where)
			}
			if !strings.HasPrefix(rec.Header().Get(echo.HeaderContentType), echo.MIMEApplicationJSON) {
				t.Fatalf("4xx answered as %q: %s", rec.Header().Get(echo.HeaderContentType), where)
			}
			for table, n := range after {
				if n != before[table] {
					t.Fatalf("refused request changed %s (%d -> %d): %s", table, before[table], n, where)
				}
			}
		case code >= 200 && code < 300:
			if len(calls) > 0 {
				t.Fatalf("success although Temporal refused everything: %s", where)
			}
			if !json.Valid(rec.Body.Bytes()) && rec.Body.Len() > 0 {
				t.Fatalf("success without JSON: %s", where)
			}
		default:
			t.Fatalf("unexpected status: %s", where)
		}
	})
}

func reachedStartOrUpdate(calls []temporalCall) bool {
	for _, c := range calls {
		if c.method == "start" || c.method == "update" {
			return true
		}
	}
	return false
}

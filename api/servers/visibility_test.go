package servers

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// run is one workflow run as visibility holds it.
type run struct {
	workflowType, id string
	started          time.Time
	attrs            map[string]string
}

// visibility answers ListWorkflow from runs, understanding the queries'
// grammar the list uses: clauses joined by AND, each `X = 'v'`, `X = "v"`
// or `X IN ("a", "b")`. Pages are one run long, so that a page's second
// look-up is exercised with pagination.
type visibility struct {
	client.Client
	runs    []run
	queries []string
}

func (v *visibility) matches(r run, query string) bool {
	for _, clause := range strings.Split(query, " AND ") {
		name, values, ok := strings.Cut(clause, " IN ")
		var want []string
		if ok {
			for _, s := range strings.Split(strings.Trim(values, "()"), ", ") {
				want = append(want, strings.Trim(s, `"`))
			}
		} else {
			n, value, ok := strings.Cut(clause, " = ")
			if !ok {
				panic("a query the fake does not read: " + query)
			}
			name, want = n, []string{strings.Trim(value, `'"`)}
		}
		got := r.attrs[name]
		if name == "WorkflowType" {
			got = r.workflowType
		}
		if !slices.Contains(want, got) {
			return false
		}
	}
	return true
}

func (v *visibility) ListWorkflow(_ context.Context, req *workflowservice.ListWorkflowExecutionsRequest) (*workflowservice.ListWorkflowExecutionsResponse, error) {
	v.queries = append(v.queries, req.GetQuery())
	var hits []run
	for _, r := range v.runs {
		if v.matches(r, req.GetQuery()) {
			hits = append(hits, r)
		}
	}
	from := 0
	if len(req.GetNextPageToken()) > 0 {
		fmt.Sscan(string(req.GetNextPageToken()), &from)
	}
	res := &workflowservice.ListWorkflowExecutionsResponse{}
	if from >= len(hits) {
		return res, nil
	}
	r := hits[from]
	fields := map[string]*commonpb.Payload{}
	for k, val := range r.attrs {
		p, err := converter.GetDefaultDataConverter().ToPayload(val)
		if err != nil {
			return nil, err
		}
		fields[k] = p
	}
	res.Executions = []*workflowpb.WorkflowExecutionInfo{{
		Execution:        &commonpb.WorkflowExecution{WorkflowId: r.id},
		StartTime:        timestamppb.New(r.started),
		SearchAttributes: &commonpb.SearchAttributes{IndexedFields: fields},
	}}
	if from+1 < len(hits) {
		res.NextPageToken = []byte(fmt.Sprint(from + 1))
	}
	return res, nil
}

func lifecycleRun(serial, state, rack string, started time.Time) run {
	return run{workflowType: serverapi.ServerLifecycleName, id: serverapi.LifecycleWorkflowID(serial), started: started,
		attrs: map[string]string{serverapi.SearchAttrServerSerial: serial, serverapi.SearchAttrLifecycleState: state,
			serverapi.SearchAttrLifecycleStep: state, serverapi.SearchAttrRack: rack}}
}

func decommissionRun(serial, state, step string, started time.Time) run {
	return run{workflowType: serverapi.DecommissionName, id: serverapi.DecommissionWorkflowID(serial), started: started,
		attrs: map[string]string{serverapi.SearchAttrServerSerial: serial, serverapi.SearchAttrLifecycleState: state,
			serverapi.SearchAttrLifecycleStep: step, serverapi.SearchAttrRack: "R01"}}
}

// listOf pages through the list as a client does: state and step by serial.
func listOf(t *testing.T, h http.Handler, filter string) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	token := ""
	for {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/servers?"+filter+"&pageSize=1&pageToken="+token, nil))
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var page serverList
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &page))
		for _, s := range page.Servers {
			_, twice := out[s.Serial]
			require.False(t, twice, "%s listed twice", s.Serial)
			require.Equal(t, serverapi.LifecycleWorkflowID(s.Serial), s.WorkflowID, "a server's list entry is its lifecycle's")
			out[s.Serial] = [2]string{s.State, s.Step}
		}
		if page.NextPageToken == "" {
			return out
		}
		token = page.NextPageToken
	}
}

// The list gives each server the state its own status gives
// (serverapi.ServerState): the latest decommission of a server whose
// lifecycle ended decides, an aborted one gives the server back, and a
// decommission still cancelling a lifecycle at work does not yet.
func TestListGivesEachServerItsStatusState(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	v := &visibility{runs: []run{
		lifecycleRun("SN-NEW", serverapi.StateWaitingRack, "", t0),
		lifecycleRun("SN-LIVE", serverapi.StateInstalled, "R01", t0),
		lifecycleRun("SN-WIPE", serverapi.StateReady, "R01", t0),
		decommissionRun("SN-WIPE", serverapi.StateAttention, serverapi.StepSecureWipe, t0.Add(time.Hour)),
		lifecycleRun("SN-AGAIN", serverapi.StateInstalled, "R01", t0),
		decommissionRun("SN-AGAIN", serverapi.StateAborted, serverapi.StepPowerOff, t0.Add(time.Hour)),
		decommissionRun("SN-AGAIN", serverapi.StateWaitingUnrack, serverapi.StepUnrack, t0.Add(2*time.Hour)),
		lifecycleRun("SN-GIVEN-BACK", serverapi.StateInstalled, "R01", t0),
		decommissionRun("SN-GIVEN-BACK", serverapi.StateAborted, serverapi.StepPowerOff, t0.Add(time.Hour)),
		lifecycleRun("SN-GONE", serverapi.StateCancelled, "R01", t0),
		decommissionRun("SN-GONE", serverapi.StateDecommissioned, serverapi.StateDecommissioned, t0.Add(time.Hour)),
		// Cancelling a lifecycle at work: the lifecycle still says where
		// the server is.
		lifecycleRun("SN-CANCELLING", serverapi.StateProvisioning, "R01", t0),
		decommissionRun("SN-CANCELLING", serverapi.StateDecommissioning, serverapi.StepCancelProvisioning, t0.Add(time.Hour)),
	}}
	inv := apitest.Inventory(t)
	e := apitest.Echo()
	guard := access.New(access.Config{Tokens: &auth.Tokens{Store: inv}, Store: inv, Logger: slog.New(slog.DiscardHandler)})
	Register(e.Group("/api/v1"), guard, Deps{Temporal: v, Inventory: inv})
	h := apitest.WithToken(e, apitest.Token(t, inv, auth.Viewer, ""))

	require.Equal(t, map[string][2]string{
		"SN-NEW":        {serverapi.StateWaitingRack, serverapi.StateWaitingRack},
		"SN-LIVE":       {serverapi.StateInstalled, serverapi.StateInstalled},
		"SN-WIPE":       {serverapi.StateDecommissioning, serverapi.StepSecureWipe},
		"SN-AGAIN":      {serverapi.StateWaitingUnrack, serverapi.StepUnrack},
		"SN-GIVEN-BACK": {serverapi.StateInstalled, serverapi.StateInstalled},
		"SN-GONE":       {serverapi.StateDecommissioned, serverapi.StateDecommissioned},
		"SN-CANCELLING": {serverapi.StateProvisioning, serverapi.StateProvisioning},
	}, listOf(t, h, ""))
	v.queries = nil
	listOf(t, h, "state="+serverapi.StateWaitingRack)
	for _, q := range v.queries {
		require.NotContains(t, q, serverapi.DecommissionName, "servers still provisioning cost no look-up of decommissions")
	}

	for state, want := range map[string][]string{
		serverapi.StateInstalled:       {"SN-LIVE", "SN-GIVEN-BACK"},
		serverapi.StateReady:           nil,
		serverapi.StateProvisioning:    {"SN-CANCELLING"},
		serverapi.StateDecommissioning: {"SN-WIPE"},
		serverapi.StateWaitingUnrack:   {"SN-AGAIN"},
		serverapi.StateDecommissioned:  {"SN-GONE"},
		serverapi.StateAborted:         nil,
	} {
		var got []string
		for serial, s := range listOf(t, h, "state="+state) {
			require.Equal(t, state, s[0], serial)
			got = append(got, serial)
		}
		require.ElementsMatch(t, want, got, state)
	}
	var got []string
	for serial := range listOf(t, h, "state="+serverapi.StateWaitingUnrack+"&rack=R02") {
		got = append(got, serial)
	}
	require.Empty(t, got, "the rack filter holds for decommissions too")
}

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
)

type batchView struct {
	batchapi.RackBatchStatus
	WorkflowID string `json:"workflowId"`
}

func countBatches(t *testing.T, f *fleetStack) int64 {
	t.Helper()
	c := temporalClient(t, f.temporal)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = '%s'", batchapi.RackBatchName),
	})
	require.NoError(t, err)
	return res.GetCount()
}

// batchBody is a rack batch request for fleet entries at units 1, 3, 5, …
func batchBody(t *testing.T, entries []fleetEntry, passwords map[string]string, extra map[string]any) string {
	t.Helper()
	var servers []map[string]any
	for i, e := range entries {
		pw := e.Password
		if p, ok := passwords[e.Serial]; ok {
			pw = p
		}
		servers = append(servers, map[string]any{
			"serial": e.Serial,
			"bmc":    map[string]string{"address": e.Address, "username": e.Username, "password": pw},
			"unit":   2*i + 1,
		})
	}
	body := map[string]any{"servers": servers}
	for k, v := range extra {
		body[k] = v
	}
	b, err := json.Marshal(body)
	require.NoError(t, err)
	return string(b)
}

// TestRackBatchProvisionsARackAndReportsTheStuckServer posts four simulated
// servers of mixed vendors as one rack batch, one of them with a wrong BMC
// password. The batch does not wait forever for the server that needs a
// human: once it has sat in attention for the batch's attentionGrace, the
// batch finishes and reports 3 installed and 1 in attention. The stuck
// lifecycle outlives the batch (it is abandoned, not terminated), so staff
// can still fix it with a retry.
func TestRackBatchProvisionsARackAndReportsTheStuckServer(t *testing.T) {
	f := startFleet(t, 4)
	rack := f.api + "/api/v1/racks/dc1/R08/servers"
	wrong := f.fleet[2]

	// Bad batches first: each is refused whole, and nothing starts.
	dup := batchBody(t, []fleetEntry{f.fleet[0], f.fleet[0]}, nil, nil)
	r := do(t, http.MethodPost, rack, dup)
	require.Equal(t, http.StatusBadRequest, r.code, string(r.body))
	require.Contains(t, r.errorMessage(t), "listed twice")
	tooHigh := strings.Replace(batchBody(t, f.fleet[:2], nil, nil), `"unit":3`, `"unit":43`, 1)
	r = do(t, http.MethodPost, rack, tooHigh)
	require.Equal(t, http.StatusUnprocessableEntity, r.code, string(r.body))
	require.Contains(t, r.errorMessage(t), "units 1-42")
	require.Zero(t, countBatches(t, f))
	require.Zero(t, countLifecycles(t, temporalClient(t, f.temporal)))

	body := batchBody(t, f.fleet, map[string]string{wrong.Serial: "not-the-password"},
		map[string]any{"concurrency": 3, "powerConcurrency": 2, "attentionGrace": "15s"})
	r = do(t, http.MethodPost, rack, body)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	var started struct {
		BatchID    string `json:"batchId"`
		WorkflowID string `json:"workflowId"`
		Servers    int    `json:"servers"`
	}
	r.json(t, &started)
	require.Equal(t, 4, started.Servers)
	require.Equal(t, "rack/dc1/R08/"+started.BatchID, started.WorkflowID)
	// The same batch posted again is the same batch, not a second one.
	r = do(t, http.MethodPost, rack, body)
	require.Equal(t, http.StatusConflict, r.code, string(r.body))
	require.Contains(t, r.errorMessage(t), "already posted")

	var st batchView
	eventually(t, 4*time.Minute, "batch finishes", func() error {
		r := do(t, http.MethodGet, f.api+"/api/v1/racks/dc1/R08/batches/"+started.BatchID, "")
		if r.code != http.StatusOK {
			return fmt.Errorf("GET batch: %d %s", r.code, r.body)
		}
		r.json(t, &st)
		if st.State != batchapi.BatchFinished {
			return fmt.Errorf("batch %s: %d installed, %d attention, %d running, %d pending", st.State, st.Installed, st.Attention, st.Running, st.Pending)
		}
		return nil
	})
	require.Equal(t, 4, st.Total)
	require.Equal(t, 3, st.Installed, "%+v", st.PerServer)
	require.Equal(t, 1, st.Attention, "%+v", st.PerServer)
	require.Zero(t, st.Failed+st.Aborted+st.AlreadyExisting+st.Running+st.Pending)
	require.Equal(t, 2, st.PowerSlots.Limit)
	require.LessOrEqual(t, st.PowerSlots.MaxHeld, 2, "never more than powerConcurrency power operations at once")
	t.Logf("power slots: %+v", st.PowerSlots)
	for i, s := range st.PerServer {
		require.Equal(t, f.fleet[i].Serial, s.Serial)
		require.True(t, s.Settled)
		if s.Serial == wrong.Serial {
			require.Equal(t, serverapi.StateAttention, s.State)
			require.Equal(t, serverapi.StepInspect, s.Step)
			require.Contains(t, s.Error, "credential")
			continue
		}
		require.Equal(t, serverapi.StateInstalled, s.State)
		srv := getServer(t, f.api, s.Serial)
		require.Equal(t, &serverapi.Location{Site: "dc1", Room: "A", Rack: "R08", Unit: 2*i + 1, Face: "front"}, srv.Location)
	}
	vendors := map[string]bool{}
	for _, e := range f.fleet {
		vendors[e.Vendor] = true
	}
	require.Len(t, vendors, 4, "a batch of mixed vendors")

	// No password of the batch in its history, nor in its children's.
	for _, id := range []string{started.WorkflowID, "server/" + f.fleet[0].Serial, "server/" + wrong.Serial} {
		h := historyText(t, f.temporal, id)
		require.Contains(t, h, `"credentialRef":"cred-`, id)
		for _, e := range f.fleet {
			require.False(t, strings.Contains(h, e.Password), "%s: a BMC password leaked into workflow history", id)
		}
		require.False(t, strings.Contains(h, "not-the-password"), id)
	}

	// A batch naming a server that already has a lifecycle reports it and
	// leaves it alone (the real server's already-started error, not a
	// failure and not a second run).
	again := strings.Replace(batchBody(t, f.fleet[:1], nil, nil), `"unit":1`, `"unit":30`, 1)
	r = do(t, http.MethodPost, rack, again)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	var second struct {
		BatchID string `json:"batchId"`
	}
	r.json(t, &second)
	eventually(t, time.Minute, "second batch finishes", func() error {
		r := do(t, http.MethodGet, f.api+"/api/v1/racks/dc1/R08/batches/"+second.BatchID, "")
		r.json(t, &st)
		if st.State != batchapi.BatchFinished {
			return fmt.Errorf("batch %s", st.State)
		}
		return nil
	})
	require.Equal(t, 1, st.AlreadyExisting, "%+v", st.PerServer)
	require.Contains(t, st.PerServer[0].Error, "already has a lifecycle")
	require.Equal(t, 1, getServer(t, f.api, f.fleet[0].Serial).Location.Unit, "the existing server was not touched")

	// The stuck server is still there for staff, and recovers by retry.
	require.Equal(t, serverapi.StateAttention, getServer(t, f.api, wrong.Serial).State)
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+wrong.Serial+"/retry",
		fmt.Sprintf(`{"bmc":{"username":%q,"password":%q}}`, wrong.Username, wrong.Password))
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	waitStateWithin(t, f.api, wrong.Serial, serverapi.StateInstalled, 3*time.Minute)
	require.Equal(t, 1, f.bmc(t, wrong.ID).Counters["installs"])
}

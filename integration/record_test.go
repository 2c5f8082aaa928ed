package integration

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// record re-records the histories that workflows/replay_test.go replays.
// Run it after an intentional change to a workflow's commands (and only
// then: a replay failure without one is the bug the replay test exists to
// catch):
//
//	go test ./integration/ -run TestRecordReplayHistories -record
//
// then review and commit workflows/testdata/*.json.
var record = flag.Bool("record", false, "record workflow histories into workflows/testdata for the replay tests")

// TestRecordReplayHistories drives real runs on `metalflow dev` with a
// simulated fleet: a server from POST to installed, one parked in attention
// by a wrong password and retried, one aborted from attention, and a rack
// batch of two. Each closed workflow's history is written as protojson, the
// format worker.WorkflowReplayer and `temporal workflow show -o json` use.
func TestRecordReplayHistories(t *testing.T) {
	if !*record {
		t.Skip("recording only with -record")
	}
	f := startFleet(t, 5)
	loc := func(unit int) *serverapi.Location {
		return &serverapi.Location{Site: "dc1", Rack: "R09", Unit: unit, Face: "front"}
	}
	installed, retried, aborted := f.fleet[0], f.fleet[1], f.fleet[2]
	f.register(t, installed, installed.Password, "", loc(1))
	f.register(t, retried, "not-the-password", "", loc(2))
	f.register(t, aborted, "not-the-password", "", loc(3))

	waitState(t, f.api, retried.Serial, serverapi.StateAttention)
	r := do(t, http.MethodPost, f.api+"/api/v1/servers/"+retried.Serial+"/retry",
		fmt.Sprintf(`{"bmc":{"username":%q,"password":%q}}`, retried.Username, retried.Password))
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	waitState(t, f.api, aborted.Serial, serverapi.StateAttention)
	r = do(t, http.MethodPost, f.api+"/api/v1/servers/"+aborted.Serial+"/abort", `{"reason":"recording an abort"}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))

	r = do(t, http.MethodPost, f.api+"/api/v1/racks/dc1/R10/servers",
		batchBody(t, f.fleet[3:], nil, map[string]any{"powerConcurrency": 1}))
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	var batch struct {
		BatchID    string `json:"batchId"`
		WorkflowID string `json:"workflowId"`
	}
	r.json(t, &batch)

	for _, e := range []fleetEntry{installed, retried} {
		waitStateWithin(t, f.api, e.Serial, serverapi.StateInstalled, 3*time.Minute)
	}
	waitState(t, f.api, aborted.Serial, serverapi.StateAborted)
	eventually(t, 3*time.Minute, "batch finishes", func() error {
		var st batchView
		r := do(t, http.MethodGet, f.api+"/api/v1/racks/dc1/R10/batches/"+batch.BatchID, "")
		r.json(t, &st)
		if st.State != batchapi.BatchFinished || st.Installed != 2 {
			return fmt.Errorf("batch %s, %d installed", st.State, st.Installed)
		}
		return nil
	})

	dir := filepath.Join("..", "workflows", "testdata")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for name, id := range map[string]string{
		"lifecycle-installed":       "server/" + installed.Serial,
		"lifecycle-attention-retry": "server/" + retried.Serial,
		"lifecycle-aborted":         "server/" + aborted.Serial,
		"lifecycle-batch-child":     "server/" + f.fleet[3].Serial,
		"rackbatch":                 batch.WorkflowID,
	} {
		writeHistory(t, f.temporal, id, filepath.Join(dir, name+".json"))
	}
}

func writeHistory(t *testing.T, hostPort, workflowID, path string) {
	t.Helper()
	c := temporalClient(t, hostPort)
	it := c.GetWorkflowHistory(context.Background(), workflowID, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	h := &historypb.History{}
	for it.HasNext() {
		ev, err := it.Next()
		require.NoError(t, err)
		h.Events = append(h.Events, ev)
	}
	js, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(h)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, append(js, '\n'), 0o644))
	t.Logf("recorded %s (%d events) into %s", workflowID, len(h.Events), path)
}

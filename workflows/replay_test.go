package workflows

import (
	"path/filepath"
	"testing"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayRecordedHistories replays histories recorded from real runs
// (metalflow dev with the simulated fleet) against today's workflow code. A
// failure means a change would break workflows already running in
// production: guard it with workflow.GetVersion. After a change that is
// meant to alter a workflow's commands, and only then, record them again:
//
//	go test ./integration/ -run TestRecordReplayHistories -record
//
// (integration/record_test.go; vip-node-joined and lbnode-registry-node-up
// come from -run TestLoadBalancerKeepsForwarding -record, as root;
// decommission.json from TestDecommissionWipesAndFreesTheRack,
// decommission-cancelling and lifecycle-cancelled from
// TestDecommissionCancelsProvisioning, both with -record),
// review, and commit testdata/*.json. Keep
// the previous recordings under a "-before-<change>" name: runs started
// before a deploy still have to replay after it.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in testdata")
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			replayer := worker.NewWorkflowReplayer()
			Register(replayer)
			require.NoError(t, replayer.ReplayWorkflowHistoryFromJSONFile(nil, file))
		})
	}
}

// The replayer must notice a workflow that no longer issues the recorded
// commands; otherwise the test above proves nothing.
func TestReplayNoticesChangedCommands(t *testing.T) {
	replayer := worker.NewWorkflowReplayer()
	replayer.RegisterWorkflowWithOptions(func(ctx workflow.Context, in serverapi.ServerLifecycleInput) (serverapi.ServerStatus, error) {
		return serverapi.ServerStatus{Serial: in.Serial, State: serverapi.StateInstalled}, nil
	}, workflow.RegisterOptions{Name: serverapi.ServerLifecycleName})
	err := replayer.ReplayWorkflowHistoryFromJSONFile(nil, filepath.Join("testdata", "lifecycle-installed.json"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "TMPRL1100", "the SDK's non-determinism error")
}

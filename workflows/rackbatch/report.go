package rackbatch

import (
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
)

// ReportState tells batch, the rack batch that started a lifecycle, where
// the server is now, so the batch need not poll its servers. It is not
// waited for: a report costs the lifecycle no workflow task, and a batch
// that has ended (the signal then fails) no longer needs to know.
func ReportState(ctx workflow.Context, batch string, r batchapi.ServerStateReport) {
	workflow.SignalExternalWorkflow(ctx, batch, "", batchapi.SignalServerState, r)
}

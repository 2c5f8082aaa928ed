// Package workflows holds metalflow's Temporal workflows. Everything here is
// deterministic: no I/O, no clocks, no randomness outside the workflow API.
// What callers and activities share with them (names, inputs, results) is
// in the standard-library-only contract packages stepapi, server/serverapi,
// rackbatch/batchapi and vip/vipapi.
package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

func workflowOptions(name string) workflow.RegisterOptions {
	return workflow.RegisterOptions{Name: name}
}

// Registrar is the part of a Temporal worker that workflows register on.
type Registrar interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
}

// Register registers every workflow under its stable name.
func Register(r Registrar) {
	r.RegisterWorkflowWithOptions(ServerLifecycle, workflowOptions(ServerLifecycleName))
	r.RegisterWorkflowWithOptions(RackBatch, workflowOptions(RackBatchName))
	r.RegisterWorkflowWithOptions(Decommission, workflowOptions(DecommissionName))
	r.RegisterWorkflowWithOptions(VIPRollout, workflowOptions(VIPRolloutName))
	r.RegisterWorkflowWithOptions(LBNodeRegistry, workflowOptions(lbapi.RegistryWorkflowName))
}

package rackbatch

import (
	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"go.temporal.io/sdk/workflow"
)

// Registrar is the part of a Temporal worker that workflows register on.
type Registrar interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
}

// Register registers the rack batch under their stable names: the names are
// in recorded histories, the functions may move.
func Register(r Registrar) {
	r.RegisterWorkflowWithOptions(RackBatch, workflow.RegisterOptions{Name: batchapi.RackBatchName})
}

package server

import (
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"go.temporal.io/sdk/workflow"
)

// Registrar is the part of a Temporal worker that workflows register on.
type Registrar interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
}

// Register registers the lifecycle and the decommission under their stable names: the names are
// in recorded histories, the functions may move.
func Register(r Registrar) {
	r.RegisterWorkflowWithOptions(ServerLifecycle, workflow.RegisterOptions{Name: serverapi.ServerLifecycleName})
	r.RegisterWorkflowWithOptions(Decommission, workflow.RegisterOptions{Name: serverapi.DecommissionName})
}

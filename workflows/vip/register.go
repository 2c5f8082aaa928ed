package vip

import (
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
	"go.temporal.io/sdk/workflow"
)

// Registrar is the part of a Temporal worker that workflows register on.
type Registrar interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
}

// Register registers the VIP and the LB node registry under their stable names: the names are
// in recorded histories, the functions may move.
func Register(r Registrar) {
	r.RegisterWorkflowWithOptions(VIPRollout, workflow.RegisterOptions{Name: vipapi.VIPRolloutName})
	r.RegisterWorkflowWithOptions(LBNodeRegistry, workflow.RegisterOptions{Name: lbapi.RegistryWorkflowName})
}

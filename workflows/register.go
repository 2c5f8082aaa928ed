// Package workflows holds metalflow's Temporal workflows, one package per
// domain: server (a server's lifecycle and its decommission), rackbatch (a
// rack of servers at once) and vip (load-balanced VIPs and the LB nodes'
// registry). Everything in them is deterministic: no I/O, no clocks, no
// randomness outside the workflow API. What callers and activities share
// with them (names, inputs, results) is in the standard-library-only
// contract packages stepapi, server/serverapi, rackbatch/batchapi and
// vip/vipapi; steprunner is the one attention loop they all run steps on.
package workflows

import (
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/workflows/rackbatch"
	"github.com/metalflow/metalflow/workflows/server"
	"github.com/metalflow/metalflow/workflows/vip"
)

// Registrar is the part of a Temporal worker that workflows register on.
type Registrar interface {
	RegisterWorkflowWithOptions(w interface{}, options workflow.RegisterOptions)
}

// Register registers every domain's workflows under their stable names.
func Register(r Registrar) {
	server.Register(r)
	rackbatch.Register(r)
	vip.Register(r)
}

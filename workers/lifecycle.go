// Package workers assembles Temporal workers: which workflows and activities
// run on which task queue.
package workers

import (
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows"
)

// LifecycleDependencies are what the lifecycle's activities talk to.
type LifecycleDependencies struct {
	Inventory   *inventory.Store
	Credentials credentials.Store
	Profiles    *profiles.Catalog
	// Dial opens BMC sessions; hardware.Dial in production.
	Dial hardware.Dialer
	// InsecureBMCTLS accepts self-signed BMC certificates.
	InsecureBMCTLS bool
}

// NewLifecycleWorker polls the lifecycle task queue with every lifecycle
// workflow and activity registered. The caller starts and stops it.
func NewLifecycleWorker(c client.Client, deps LifecycleDependencies) worker.Worker {
	w := worker.New(c, workflows.TaskQueue, worker.Options{})
	workflows.Register(w)
	(&activities.Inventory{Store: deps.Inventory}).Register(w)
	(&activities.Provisioning{
		Inventory: deps.Inventory, Credentials: deps.Credentials, Profiles: deps.Profiles,
		Dial: deps.Dial, InsecureTLS: deps.InsecureBMCTLS,
	}).Register(w)
	(&BatchActivities{Client: c}).Register(w)
	return w
}

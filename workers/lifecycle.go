// Package workers assembles Temporal workers: which workflows and activities
// run on which task queue.
package workers

import (
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/metalflow/metalflow/workflows"
)

// NewLifecycleWorker polls the lifecycle task queue with every lifecycle
// workflow registered. The caller starts and stops it.
func NewLifecycleWorker(c client.Client) worker.Worker {
	w := worker.New(c, workflows.TaskQueue, worker.Options{})
	workflows.Register(w)
	return w
}

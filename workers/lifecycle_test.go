package workers

import "testing"

// Status reads are queries, answered by workflow task pollers; the SDK's
// default of two made them queue behind the fleet's own workflow tasks
// (status read p99 ~0.8 s vs ~0.3 s with 16, `metalflow bench api`).
func TestLifecycleWorkerPollsWithMoreThanTheDefaultTwo(t *testing.T) {
	if got := lifecycleWorkerOptions().MaxConcurrentWorkflowTaskPollers; got <= 2 {
		t.Fatalf("MaxConcurrentWorkflowTaskPollers = %d, want more than the SDK's default 2", got)
	}
}

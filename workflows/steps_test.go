package workflows

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/workflows/steprunner"
)

// Steps() is what the API and the operator UI list; the lifecycle's table
// is what runs. Until Steps() is derived from the table they must agree.
func TestLifecycleTableIsSteps(t *testing.T) {
	require.Equal(t, Steps(), (*lifecycle)(nil).steps().Names())
}

func TestDecommissionTableIsDecommissionSteps(t *testing.T) {
	require.Equal(t, DecommissionSteps(), (&decommission{}).steps().Names())
	every := (&decommission{in: DecommissionInput{CancelLifecycle: true, Pools: []string{"web"}}}).steps().Names()
	require.Equal(t, append([]string{StepCancelProvisioning, StepLeaveLoadBalancer}, DecommissionSteps()...), every)
}

// The status types are the runner's until they are one type.
func TestStepStatusesAreTheRunners(t *testing.T) {
	require.Equal(t,
		[]string{StepPending, StepRunning, StepDone, StepFailed, StepSkipped},
		[]string{steprunner.StatusPending, steprunner.StatusRunning, steprunner.StatusDone, steprunner.StatusFailed, steprunner.StatusSkipped})
}

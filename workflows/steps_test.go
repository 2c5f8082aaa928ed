package workflows

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A decommission's table grows by the steps its input asks for, in front.
func TestDecommissionTableGrowsWithItsInput(t *testing.T) {
	every := (&decommission{in: DecommissionInput{CancelLifecycle: true, Pools: []string{"web"}}}).steps().Names()
	require.Equal(t, append([]string{StepCancelProvisioning, StepLeaveLoadBalancer}, DecommissionSteps()...), every)
	require.Equal(t, []string{StepLeaveAggregate, StepDeleteCloudNode, StepSecureWipe, StepResetBIOS, StepPowerOff, StepRetireAsset, StepUnrack},
		DecommissionSteps())
}

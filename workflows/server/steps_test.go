package server

import (
	"testing"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/stretchr/testify/require"
)

// A decommission's table grows by the steps its input asks for, in front.
func TestDecommissionTableGrowsWithItsInput(t *testing.T) {
	every := (&decommission{in: serverapi.DecommissionInput{CancelLifecycle: true, Pools: []string{"web"}}}).steps().Names()
	require.Equal(t, append([]string{serverapi.StepCancelProvisioning, serverapi.StepLeaveLoadBalancer}, DecommissionSteps()...), every)
	require.Equal(t, []string{serverapi.StepLeaveAggregate, serverapi.StepDeleteCloudNode, serverapi.StepSecureWipe, serverapi.StepResetBIOS, serverapi.StepPowerOff, serverapi.StepRetireAsset, serverapi.StepUnrack},
		DecommissionSteps())
}

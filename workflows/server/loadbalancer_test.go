package server

import (
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/internal/wftest"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/require"
)

func TestLifecycleJoinsItsPoolsOnceProvisioned(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-LB1")
	in.Location = &dock
	in.Pools = []string{"web", "api"}
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, stepapi.StepDone, stepOf(final, serverapi.StepJoinLoadBalancer).Status)
	require.Equal(t, "backend of web, api", stepOf(final, serverapi.StepJoinLoadBalancer).Note)
	require.Equal(t, []serverapi.LoadBalancerMembershipInput{
		{Serial: "SN-LB1", VIP: "web", Actor: "lifecycle"}, {Serial: "SN-LB1", VIP: "api", Actor: "lifecycle"},
	}, inputsOf[serverapi.LoadBalancerMembershipInput](lt.fake, serverapi.JoinLoadBalancerName))
	require.Equal(t, serverapi.JoinLoadBalancerName, lt.fake.Calls[len(lt.fake.Calls)-1], "joining is the last step")
	require.Equal(t, []string{"web", "api"}, final.Pools)
}

func TestLifecycleWithoutPoolsSkipsJoining(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-LB2")
	in.Location = &dock
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, stepapi.StepSkipped, stepOf(final, serverapi.StepJoinLoadBalancer).Status)
	require.Contains(t, stepOf(final, serverapi.StepJoinLoadBalancer).Note, "no load-balancer pools")
	require.Zero(t, lt.fake.Count(serverapi.JoinLoadBalancerName))
}

// A VIP that refuses the server for good (it does not exist) parks the
// server in attention; staff may skip: the server is provisioned anyway.
func TestLifecycleJoinFailureIsSkippable(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.JoinLoadBalancerName, wftest.NonRetryable("no running VIP web", stepapi.ErrTypeNoSuchVIP))
	in := input("SN-LB3")
	in.Location = &dock
	in.Pools = []string{"web"}
	var parked serverapi.ServerStatus
	lt.at(time.Hour, func() {
		parked = lt.status()
		lt.update(stepapi.UpdateSkip, serverapi.SkipInput{By: "ops"})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, serverapi.StepJoinLoadBalancer, parked.Attention.Step)
	require.True(t, parked.Attention.Skippable)
	require.Equal(t, stepapi.StepSkipped, stepOf(final, serverapi.StepJoinLoadBalancer).Status)
	require.Equal(t, serverapi.StateInstalled, final.State)
}

func TestLifecycleRefusesBadPools(t *testing.T) {
	for _, pools := range [][]string{{"Web"}, {"web", "web"}, {""}} {
		lt := newLifecycleTest(t)
		in := input("SN-LB4")
		in.Pools = pools
		lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
		require.Error(t, lt.env.GetWorkflowError(), "%v", pools)
		require.Empty(t, lt.fake.Calls)
	}
}

func TestDecommissionLeavesTheLoadBalancerFirst(t *testing.T) {
	lt := newDecommissionTest(t)
	lt.at(time.Hour, func() { lt.update(serverapi.UpdateUnracked, serverapi.UnrackedInput{}) })
	in := decommissionInput("SN-LB5", "compute")
	in.Pools = []string{"web"}
	lt.env.ExecuteWorkflow(serverapi.DecommissionName, in)
	require.NoError(t, lt.env.GetWorkflowError())
	var final serverapi.DecommissionStatus
	require.NoError(t, lt.env.GetWorkflowResult(&final))
	require.Equal(t, serverapi.StepLeaveLoadBalancer, final.Steps[0].Name)
	require.Equal(t, stepapi.StepDone, final.Steps[0].Status)
	require.Equal(t, serverapi.LeaveLoadBalancerName, lt.fake.Calls[0], "out of the load balancer before anything else")
}

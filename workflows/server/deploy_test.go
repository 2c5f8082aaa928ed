package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// agentStep is one report a stand-in deploy agent sends, after the
// attempt's power-on.
type agentStep struct {
	after  time.Duration
	report serverapi.DeployReport
}

// newDeployTest is a lifecycle whose profile names an image; each attempt's
// stand-in agent sends script (with the attempt filled in), and the
// installed OS phones home 40 s after the disk was booted.
func newDeployTest(t *testing.T, script ...agentStep) *lifecycleTest {
	lt := newLifecycleTest(t)
	lt.fake.Inspect.Image = "debian-12"
	lt.fake.Inspect.SystemSerial = "SN-D1"
	lt.fake.Inspect.MACs = []string{"02:00:00:00:00:01", "02:00:00:00:00:02"}
	lt.fake.Inspect.RootDevice = map[string]string{"size": ">= 20"}
	lt.fake.Inspect.SSHAuthorizedKeys = []string{"ssh-ed25519 AAAAprofile"}
	lt.env.SetOnActivityCompletedListener(func(info *activity.Info, _ converter.EncodedValue, err error) {
		if err != nil {
			return
		}
		switch info.ActivityType.Name {
		case serverapi.StartInstallName:
			lt.fake.Mu.Lock()
			attempt := lt.fake.Attempts[len(lt.fake.Attempts)-1]
			lt.fake.Mu.Unlock()
			for _, s := range script {
				r := s.report
				r.Attempt = attempt
				lt.env.RegisterDelayedCallback(func() { lt.env.SignalWorkflow(serverapi.SignalDeployReport, r) }, s.after)
			}
		case serverapi.BootFromDiskName:
			attempt := lt.status().InstallAttempt
			lt.env.RegisterDelayedCallback(func() { lt.phoneHome(attempt) }, 40*time.Second)
		}
	})
	return lt
}

func matchingInventory() serverapi.AgentInventory {
	return serverapi.AgentInventory{SystemSerial: "sn-d1", MACs: []string{"02:00:00:00:00:02", "02:00:00:00:00:01"}, CPUs: 2,
		Disks: []serverapi.AgentDisk{{Name: "vda", Size: 32 << 30}}}
}

func deployInput() serverapi.ServerLifecycleInput {
	in := input("SN-D1")
	in.Location = &dock
	in.SSHAuthorizedKeys = []string{"ssh-ed25519 AAAAserver"}
	return in
}

// An install with an image: the agent's inventory matches the BMC's, the
// plan is released, the image is written, the disk booted, the installed
// OS phones home: installed, each phase timed in the status.
func TestDeployWritesTheImageAndBootsTheDisk(t *testing.T) {
	inv := matchingInventory()
	lt := newDeployTest(t,
		agentStep{20 * time.Second, serverapi.DeployReport{Phase: serverapi.DeployInventory, Inventory: &inv}},
		agentStep{30 * time.Second, serverapi.DeployReport{Phase: serverapi.DeployProgress, BytesWritten: 100 << 20, BytesTotal: 500 << 20, Disk: "vda"}},
		// The agent's result carries no byte counts, as the real one's.
		agentStep{50 * time.Second, serverapi.DeployReport{Phase: serverapi.DeployWritten, ImageMiBPerSecond: 95, DiskLimitMiBPerSecond: 100}},
	)
	var writing serverapi.ServerStatus
	lt.at(40*time.Second, func() { writing = lt.status() })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, deployInput())
	st := lt.result()
	require.Equal(t, serverapi.StateInstalled, st.State)

	starts := inputsOf[serverapi.StartInstallInput](lt.fake, serverapi.StartInstallName)
	require.Len(t, starts, 1)
	plan := starts[0].Deploy
	require.NotNil(t, plan, "an image makes the install a deploy")
	require.Equal(t, "debian-12", plan.Image)
	require.Equal(t, "sn-d1", plan.Hostname)
	require.Equal(t, map[string]string{"size": ">= 20"}, plan.RootDevice)
	require.Equal(t, []string{"ssh-ed25519 AAAAprofile", "ssh-ed25519 AAAAserver"}, plan.SSHAuthorizedKeys)
	require.Equal(t, "02:00:00:00:00:01", plan.MAC)

	require.Equal(t, []serverapi.DecideDeployInput{{Serial: "SN-D1", Attempt: 1, Release: true}},
		inputsOf[serverapi.DecideDeployInput](lt.fake, serverapi.DecideDeployName))
	require.Equal(t, 1, lt.fake.Count(serverapi.BootFromDiskName))
	require.Equal(t, 1, lt.fake.Count(serverapi.FinishInstallName))

	d := st.Deploy
	require.NotNil(t, d)
	require.Equal(t, serverapi.DeployBooted, d.Phase, "the installed OS phoned home")
	for name, at := range map[string]*time.Time{"power-on": d.PowerOnAt, "agent up": d.AgentUpAt, "written": d.WrittenAt, "reboot": d.RebootAt, "phone home": d.PhoneHomeAt} {
		require.NotNil(t, at, name)
	}
	require.True(t, d.PowerOnAt.Before(*d.AgentUpAt) && d.AgentUpAt.Before(*d.WrittenAt) && !d.RebootAt.Before(*d.WrittenAt) && d.RebootAt.Before(*d.PhoneHomeAt))
	require.Equal(t, "vda", d.Disk)
	require.Equal(t, 95.0, d.ImageMiBPerSecond)
	require.Equal(t, int64(500<<20), d.BytesWritten, "written means the whole image, whatever progress last counted")
	require.NotNil(t, writing.Deploy)
	require.Equal(t, serverapi.DeployProgress, writing.Deploy.Phase, "progress shows while the image is written")
	require.Equal(t, int64(100<<20), writing.Deploy.BytesWritten)
}

// A machine whose in-band serial or MACs differ from the BMC's is not
// written to: the plan is refused and the server waits for staff with both
// values.
func TestDeployRefusesAMachineTheBMCDoesNotDescribe(t *testing.T) {
	inv := matchingInventory()
	inv.SystemSerial = "SN-OTHER"
	inv.MACs = append(inv.MACs, "02:00:00:00:00:99")
	lt := newDeployTest(t, agentStep{20 * time.Second, serverapi.DeployReport{Phase: serverapi.DeployInventory, Inventory: &inv}})
	var parked serverapi.ServerStatus
	lt.at(10*time.Minute, func() {
		parked = lt.status()
		lt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "wrong chassis"})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, deployInput())
	require.NoError(t, lt.env.GetWorkflowError())
	require.Equal(t, serverapi.StateAttention, parked.State)
	require.Equal(t, serverapi.StepInstallOS, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, `the BMC says "SN-D1", the machine says "SN-OTHER"`)
	require.Contains(t, parked.Attention.Error, "02:00:00:00:00:99")
	decisions := inputsOf[serverapi.DecideDeployInput](lt.fake, serverapi.DecideDeployName)
	require.Len(t, decisions, 1)
	require.False(t, decisions[0].Release)
	require.Contains(t, decisions[0].Reason, "SN-OTHER")
	require.Zero(t, lt.fake.Count(serverapi.BootFromDiskName))
}

// An agent that fails (a checksum mismatch) parks the server with its
// class and message; staff's retry starts a new attempt.
func TestDeployFailureWaitsForStaffAndRetryStartsAgain(t *testing.T) {
	inv := matchingInventory()
	lt := newDeployTest(t,
		agentStep{20 * time.Second, serverapi.DeployReport{Phase: serverapi.DeployInventory, Inventory: &inv}},
		agentStep{40 * time.Second, serverapi.DeployReport{Phase: serverapi.DeployFailed, FailureClass: serverapi.FailureChecksum,
			Failure: "sha256 of the image is 1234, the catalog says abcd"}},
	)
	var parked serverapi.ServerStatus
	lt.at(10*time.Minute, func() {
		parked = lt.status()
		lt.update(stepapi.UpdateRetry, serverapi.RetryInput{})
	})
	lt.at(30*time.Minute, func() { lt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "image is broken"}) })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, deployInput())
	require.NoError(t, lt.env.GetWorkflowError())
	require.Equal(t, serverapi.StateAttention, parked.State)
	require.Contains(t, parked.Attention.Error, "(checksum): sha256 of the image is 1234")
	require.Equal(t, []int{1, 2}, lt.fake.Attempts, "retry netboots the agent again, as a new attempt")
	require.Zero(t, lt.fake.Count(serverapi.BootFromDiskName), "a failed deploy never boots its disk")
}

// An agent never heard from spends the attempt like a silent installer;
// reports of an earlier attempt change nothing.
func TestDeploySilentAgentSpendsTheAttempt(t *testing.T) {
	inv := matchingInventory()
	lt := newDeployTest(t)
	lt.fake.Inspect.InstallTimeout = 20 * time.Minute
	lt.fake.Inspect.InstallAttempts = 2
	// Attempt 1's agent speaks up only during attempt 2.
	lt.at(25*time.Minute, func() {
		lt.env.SignalWorkflow(serverapi.SignalDeployReport, serverapi.DeployReport{Attempt: 1, Phase: serverapi.DeployInventory, Inventory: &inv})
	})
	var second serverapi.ServerStatus
	lt.at(30*time.Minute, func() { second = lt.status() })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, deployInput())
	require.Equal(t, []int{1, 2}, lt.fake.Attempts)
	require.Equal(t, 2, second.Deploy.Attempt)
	require.Nil(t, second.Deploy.AgentUpAt, "attempt 1's report is not attempt 2's agent")
	require.Zero(t, lt.fake.Count(serverapi.DecideDeployName))
	st := lt.status()
	require.Equal(t, serverapi.StateAttention, st.State)
}

// Without an image the install is the installer's, as before: no plan.
func TestInstallWithoutAnImageIsTheInstallers(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-D2")
	in.Location = &dock
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	st := lt.result()
	require.Equal(t, serverapi.StateInstalled, st.State)
	require.Nil(t, st.Deploy)
	require.Nil(t, inputsOf[serverapi.StartInstallInput](lt.fake, serverapi.StartInstallName)[0].Deploy)
	require.Zero(t, lt.fake.Count(serverapi.DecideDeployName))
}

func TestInventoryMismatch(t *testing.T) {
	bmc := serverapi.InspectServerResult{SystemSerial: "ABC123", MACs: []string{"02:AA:00:00:00:01"}}
	require.Empty(t, inventoryMismatch(bmc, serverapi.AgentInventory{SystemSerial: " abc123 ", MACs: []string{"02:aa:00:00:00:01"}}))
	require.Empty(t, inventoryMismatch(serverapi.InspectServerResult{MACs: bmc.MACs}, serverapi.AgentInventory{SystemSerial: "X", MACs: bmc.MACs}),
		"a BMC that reports no serial leaves the MACs to decide")
	require.Contains(t, inventoryMismatch(bmc, serverapi.AgentInventory{SystemSerial: "ABC123"}), "the machine sees ")
	require.Contains(t, inventoryMismatch(bmc, serverapi.AgentInventory{SystemSerial: "XYZ", MACs: bmc.MACs}), `the machine says "XYZ"`)
}
